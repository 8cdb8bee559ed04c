resource "google_sql_database_instance" "main" {
  project             = var.project_id
  name                = var.name
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.settings.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.settings.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.settings.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    # Private IP only: functions and the migration job reach it through Direct VPC egress and
    # the Cloud SQL Node connector (mTLS with ephemeral certificates, IAM login).
    ip_configuration {
      ipv4_enabled    = false
      private_network = var.private_network
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = var.settings.backup_start_time
      transaction_log_retention_days = var.settings.log_retention_days

      backup_retention_settings {
        retained_backups = var.settings.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      record_application_tags = false
      record_client_address   = false
    }
  }

  lifecycle {
    # disk_autoresize grows the disk; do not shrink it back on the next apply.
    ignore_changes = [settings[0].disk_size]
  }
}

resource "google_sql_database" "app" {
  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = var.database
}

# One IAM database user per function service account (no passwords anywhere). Table grants are
# made by the migration job, which runs as an admin user below (see docs/production.md).
resource "google_sql_user" "iam" {
  for_each = var.iam_service_accounts

  project  = var.project_id
  instance = google_sql_database_instance.main.name
  name     = trimsuffix(each.value, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# Admin IAM database users (the migration job): members of cloudsqlsuperuser, so they can create
# the schema and grant table privileges to the function users. Still no password: they log in
# with IAM through the connector like the functions.
resource "google_sql_user" "admin" {
  for_each = var.admin_service_accounts

  project        = var.project_id
  instance       = google_sql_database_instance.main.name
  name           = trimsuffix(each.value, ".gserviceaccount.com")
  type           = "CLOUD_IAM_SERVICE_ACCOUNT"
  database_roles = ["cloudsqlsuperuser"]
}
