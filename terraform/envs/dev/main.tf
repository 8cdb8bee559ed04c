provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    managed-by = "terraform"
  }
}

module "stack" {
  source = "../../stack"

  environment            = "dev"
  project_id             = var.project_id
  region                 = var.region
  partners               = var.partners
  app_instances          = var.app_instances
  consumers              = var.consumers
  identity               = var.identity
  upstash_redis_rest_url = var.upstash_redis_rest_url
  runtime_settings       = var.runtime_settings
  cors_origins           = var.cors_origins
  public_base_url        = var.public_base_url
  functions              = var.functions
  log_level              = "debug"

  # dev: cheap, scales to zero, disposable.
  deletion_protection = false
  function_defaults = {
    https  = { min_instances = 0, max_instances = 5 }
    pubsub = { min_instances = 0, max_instances = 5 }
  }
  cloudsql = {
    tier              = "db-custom-1-3840"
    availability_type = "ZONAL"
    disk_size_gb      = 10
    retained_backups  = 7
  }
  firestore = {
    point_in_time_recovery = false
  }
}
