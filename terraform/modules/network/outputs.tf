output "network_id" {
  description = "VPC id (Cloud SQL private_network)."
  value       = google_compute_network.main.id
}

output "private_services_connection" {
  description = "The private services access peering (depend on it before creating Cloud SQL)."
  value       = google_service_networking_connection.private_services.id
}

output "functions_subnet_id" {
  description = "Subnet for Direct VPC egress (functions and the migration job)."
  value       = google_compute_subnetwork.functions.id
}
