# The one root composition both environments use (envs/dev, envs/prod only choose sizes).
# Everything about topics, subscriptions and function triggers comes from the topology file
# the local emulator suite provisions from as well.

locals {
  topology = jsondecode(file("${path.module}/../../shared/topology.json"))
  defaults = local.topology.defaults

  topics        = { for t in local.topology.topics : t.name => t }
  subscriptions = { for s in local.topology.subscriptions : s.name => s }
  functions     = { for f in local.topology.functions : f.name => f }

  # ingestInteraction -> ingest-interaction (Cloud Run service names are lower-case).
  function_ids    = { for name, f in local.functions : name => lower(replace(name, "/([a-z0-9])([A-Z])/", "$1-$2")) }
  function_sa_ids = { for name, id in local.function_ids : name => "fn-${id}" }

  # Deterministic service-account emails (known at plan time, used for PGUSER etc.).
  function_sa_emails = { for name, id in local.function_sa_ids : name => "${id}@${var.project_id}.iam.gserviceaccount.com" }

  project_number       = data.google_project.main.number
  pubsub_service_agent = "service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  labels = merge(var.labels, { app = "lerning-data-room", env = var.environment })

  required_apis = toset([
    "artifactregistry.googleapis.com",
    "certificatemanager.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ])
}

data "google_project" "main" {
  project_id = var.project_id
}

data "google_storage_project_service_account" "main" {
  project = var.project_id
}

resource "google_project_service" "main" {
  for_each = local.required_apis

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}
