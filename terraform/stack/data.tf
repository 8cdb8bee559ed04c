# ---- state, files and secrets -------------------------------------------------------------

module "network" {
  source = "../modules/network"

  project_id     = var.project_id
  region         = var.region
  functions_cidr = var.network.functions_cidr

  depends_on = [google_project_service.main]
}

module "firestore" {
  source = "../modules/firestore"

  project_id             = var.project_id
  location               = coalesce(var.firestore.location, var.region)
  point_in_time_recovery = var.firestore.point_in_time_recovery
  deletion_protection    = var.deletion_protection

  depends_on = [google_project_service.main]
}

module "cloudsql" {
  source = "../modules/cloudsql"

  project_id          = var.project_id
  region              = var.region
  name                = "ldr-${var.environment}"
  private_network     = module.network.network_id
  deletion_protection = var.deletion_protection
  labels              = local.labels
  settings            = var.cloudsql

  # IAM database users for the functions that use Cloud SQL, and the migration job's admin user.
  iam_service_accounts = {
    for name, access in local.function_access : name => module.function[name].service_account_email if access.cloudsql
  }
  admin_service_accounts = { migrate = google_service_account.migrate.email }

  depends_on = [google_project_service.main, module.network]
}

module "storage" {
  source = "../modules/storage"

  project_id        = var.project_id
  name              = "${var.project_id}-ldr-artifacts"
  location          = var.region
  labels            = local.labels
  force_destroy     = !var.deletion_protection
  cors              = { origins = var.cors_origins, rules_file = "${path.module}/../../shared/bucket-cors.json" }
  gcs_service_agent = data.google_storage_project_service_account.main.email_address

  finalize_notification = {
    topic = one([for t in local.topology.topics : module.topic[t.name].id if t.publishedBy == "cloud-storage"])
  }

  depends_on = [google_project_service.main]
}

module "secrets" {
  source = "../modules/secrets"

  project_id        = var.project_id
  replica_locations = [var.region]
  labels            = local.labels

  # partner-hmac holds one version per partner (partners[slug].hmac_version), mounted into
  # mirrorToPartners as the file PARTNER_SECRETS_DIR/<slug>.
  secrets = {
    (local.upstash_secret)      = { description = "upstash-rest-token" }
    (local.partner_hmac_secret) = { description = "partner-hmac-keys" }
  }

  depends_on = [google_project_service.main]
}
