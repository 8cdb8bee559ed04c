provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    managed-by = "terraform"
  }
}

module "stack" {
  source = "../../stack"

  environment            = "prod"
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
  log_level              = "info"

  # prod: protected, highly available, warm HTTPS paths.
  deletion_protection = true
  function_defaults = {
    https  = { min_instances = 1, max_instances = 100 }
    pubsub = { min_instances = 1, max_instances = 100 }
  }
  cloudsql = {
    tier               = "db-custom-2-7680"
    availability_type  = "REGIONAL"
    disk_size_gb       = 50
    retained_backups   = 30
    log_retention_days = 7
  }
  firestore = {
    point_in_time_recovery = true
  }
}
