resource "google_compute_network" "main" {
  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

# Direct VPC egress: Cloud Run functions and the migration job take their interface addresses from
# this subnet (about two per instance while revisions roll), so it is sized for every instance of
# the Cloud SQL users at their max_instances. No connector VMs run when nothing is running.
resource "google_compute_subnetwork" "functions" {
  project                  = var.project_id
  name                     = "${var.name}-functions"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.functions_cidr
  private_ip_google_access = true
}

# Private services access: the range Cloud SQL's private IP is allocated from.
resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_services_prefix_length
  network       = google_compute_network.main.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.main.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
  deletion_policy         = "ABANDON"
}
