resource "google_compute_network" "main" {
  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "connector" {
  project                  = var.project_id
  name                     = "${var.name}-connector"
  region                   = var.region
  network                  = google_compute_network.main.id
  ip_cidr_range            = var.connector_cidr
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

# Functions reach private IPs (Cloud SQL) through this connector; other egress stays direct.
resource "google_vpc_access_connector" "functions" {
  project       = var.project_id
  name          = var.connector.name
  region        = var.region
  machine_type  = var.connector.machine_type
  min_instances = var.connector.min_instances
  max_instances = var.connector.max_instances

  subnet {
    name = google_compute_subnetwork.connector.name
  }
}
