resource "google_compute_global_address" "gateway" {
  project = var.project_id
  name    = "${var.name}-ip"
}

resource "google_compute_region_network_endpoint_group" "room" {
  project               = var.project_id
  name                  = "${var.name}-room"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = var.room_service_name
  }
}

resource "google_compute_backend_service" "room" {
  project               = var.project_id
  name                  = "${var.name}-room"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.room.id
  }

  log_config {
    enable      = true
    sample_rate = 1
  }
}

# One host rule per partner domain; the path is rewritten under /p/<slug>/ so partnerRoom serves
# exactly the same routes as on its own URL.
resource "google_compute_url_map" "main" {
  project         = var.project_id
  name            = var.name
  default_service = google_compute_backend_service.room.id

  dynamic "host_rule" {
    for_each = var.hosts
    content {
      hosts        = [host_rule.value]
      path_matcher = "partner-${host_rule.key}"
    }
  }

  dynamic "path_matcher" {
    for_each = var.hosts
    content {
      name            = "partner-${path_matcher.key}"
      default_service = google_compute_backend_service.room.id

      route_rules {
        priority = 1
        service  = google_compute_backend_service.room.id

        match_rules {
          prefix_match = "/"
        }

        route_action {
          url_rewrite {
            path_prefix_rewrite = "/p/${path_matcher.key}/"
          }
        }
      }
    }
  }
}

resource "google_certificate_manager_certificate_map" "gateway" {
  project     = var.project_id
  name        = var.name
  description = "Certificates of the partner custom domains (one entry per partner)."
}

resource "google_compute_target_https_proxy" "gateway" {
  project         = var.project_id
  name            = "${var.name}-https"
  url_map         = google_compute_url_map.main.id
  certificate_map = "//certificatemanager.googleapis.com/${google_certificate_manager_certificate_map.gateway.id}"
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.gateway.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.gateway.id
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  project = var.project_id
  name    = "${var.name}-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project_id
  name    = "${var.name}-http"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project_id
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.gateway.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
