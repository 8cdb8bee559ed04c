# ---- scheduled calls (topology `schedules`): Cloud Scheduler, OIDC --------------------------
# Each entry POSTs {} to <function URL><path> on its cron schedule, e.g. the outbox relay of
# updateProgress (/outbox/relay, every minute). The scheduler identity may invoke exactly the
# scheduled functions (module.function invokers). Event functions keep ingress internal-only:
# Cloud Scheduler in the same project counts as internal traffic.

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "ldr-scheduler"
  display_name = "Scheduled calls to functions"
  description  = "Signs the OIDC tokens of the topology's Cloud Scheduler jobs; run.invoker on the scheduled functions only."

  depends_on = [google_project_service.main]
}

resource "google_cloud_scheduler_job" "main" {
  for_each = { for s in try(local.topology.schedules, []) : s.name => s }

  project     = var.project_id
  region      = var.region
  name        = "ldr-${each.key}"
  description = "POST ${each.value.path} on ${each.value.function}"
  schedule    = each.value.schedule
  time_zone   = "Etc/UTC"
  # Scheduler allows 15 s to 30 min; the function's own timeout bounds the call.
  attempt_deadline = "${max(15, local.function_runtime[each.value.function].timeout_seconds)}s"

  # The next tick is the retry: the relay is idempotent and runs again a minute later.
  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = "${module.function[each.value.function].uri}${each.value.path}"
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = module.function[each.value.function].uri
    }
  }

  depends_on = [google_project_service.main]
}

# ---- database migrations: a Cloud Run job inside the VPC -----------------------------------
# Cloud SQL has only a private IP, so migrations run where the functions run: a Cloud Run job
# with Direct VPC egress, started on demand
#   gcloud run jobs execute ldr-migrate --region <region> --wait
# It runs the built artifact (`node dist/migrate.js`) from the image Cloud Functions built for
# updateProgress out of the same archive, as its own service account, which is an admin IAM
# database user (cloudsqlsuperuser): it applies shared/migrations/*.sql and then the table
# grants in PG_GRANTS to the function users. See docs/production.md.

resource "google_service_account" "migrate" {
  project      = var.project_id
  account_id   = "ldr-migrate"
  display_name = "Database migrations"
  description  = "Runs the ldr-migrate Cloud Run job: admin IAM database user (cloudsqlsuperuser) on the Cloud SQL instance."

  depends_on = [google_project_service.main]
}

resource "google_project_iam_member" "migrate" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.migrate.member

  condition {
    title      = local.cloudsql_condition.title
    expression = local.cloudsql_condition.expression
  }
}

locals {
  # Table privileges per function that uses Cloud SQL: readwrite = SELECT, INSERT, UPDATE,
  # DELETE on all tables (and USAGE on sequences) of the application schema; read = SELECT.
  database_grants = {
    updateProgress = "readwrite"
    publishContent = "read"
    progressApi    = "read"
  }

  migrate_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOG_LEVEL            = var.log_level
    CLOUD_SQL_INSTANCE   = module.cloudsql.connection_name
    PGDATABASE           = module.cloudsql.database
    PGUSER               = module.cloudsql.admin_users["migrate"]
    # {"<function IAM database user>": "readwrite" | "read"}: granted after the migrations.
    PG_GRANTS = jsonencode({
      for name, grant in local.database_grants : module.cloudsql.iam_users[name] => grant
    })
  }

  # The image Cloud Functions built from the archive (buildpacks, /workspace holds the archive
  # plus node_modules). The launcher sets up the buildpack environment (node on PATH).
  migrate_image_function = "updateProgress"
}

data "google_cloud_run_v2_service" "migrate_image" {
  project  = var.project_id
  location = var.region
  name     = module.function[local.migrate_image_function].name

  depends_on = [module.function]
}

resource "google_cloud_run_v2_job" "migrate" {
  project             = var.project_id
  location            = var.region
  name                = "ldr-migrate"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.migrate.email
      max_retries     = 0
      timeout         = "900s"

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = module.network.network_id
          subnetwork = module.network.functions_subnet_id
        }
      }

      containers {
        image   = data.google_cloud_run_v2_service.migrate_image.template[0].containers[0].image
        command = ["/cnb/lifecycle/launcher"]
        args    = ["node", "dist/migrate.js"]

        dynamic "env" {
          for_each = local.migrate_env
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  depends_on = [google_project_iam_member.migrate, module.cloudsql]
}
