output "ip_address" {
  description = "Global IP every partner domain's A record must point to."
  value       = google_compute_global_address.gateway.address
}

output "certificate_map" {
  description = "Name of the certificate map partner modules add their entries to."
  value       = google_certificate_manager_certificate_map.gateway.name
}

output "url_map" {
  description = "Id of the URL map holding the partner host rules."
  value       = google_compute_url_map.main.id
}
