locals {
  # Every secret the function reads, as an environment variable or a mounted volume.
  secret_ids = toset(concat(
    [for s in values(var.secret_env_vars) : s.secret],
    [for v in values(var.secret_volumes) : v.secret],
  ))
}

# Every function runs as its own identity, so each grant below is visible per function.
resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = var.service_account.account_id
  display_name = coalesce(var.service_account.display_name, "Cloud Function ${var.name}")
  description  = "Runtime identity of Cloud Function ${var.name} (${var.trigger})."
}

resource "google_cloudfunctions2_function" "main" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description
  labels      = merge(var.labels, { trigger = var.trigger })

  build_config {
    runtime               = var.runtime
    entry_point           = var.entry_point
    service_account       = var.build.service_account
    docker_repository     = var.build.docker_repository
    environment_variables = var.build.environment_variables

    source {
      storage_source {
        bucket = var.source_object.bucket
        object = var.source_object.object
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.runtime.email
    available_memory                 = var.runtime_config.memory
    available_cpu                    = var.runtime_config.cpu
    timeout_seconds                  = var.runtime_config.timeout_seconds
    min_instance_count               = var.runtime_config.min_instances
    max_instance_count               = var.runtime_config.max_instances
    max_instance_request_concurrency = var.runtime_config.concurrency
    ingress_settings                 = var.runtime_config.ingress
    all_traffic_on_latest_revision   = true
    environment_variables            = var.env_vars

    # Direct VPC egress (no connector): an interface in the functions subnet, private ranges only.
    direct_vpc_egress = try(var.vpc.egress, null)
    dynamic "direct_vpc_network_interface" {
      for_each = var.vpc == null ? [] : [var.vpc]
      content {
        network    = direct_vpc_network_interface.value.network
        subnetwork = direct_vpc_network_interface.value.subnetwork
      }
    }

    dynamic "secret_environment_variables" {
      for_each = var.secret_env_vars
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }

    # One volume per mount path (the platform shadows the whole directory with one secret);
    # each `versions` entry becomes the file <mount_path>/<path>.
    dynamic "secret_volumes" {
      for_each = var.secret_volumes
      content {
        mount_path = secret_volumes.key
        project_id = var.project_id
        secret     = secret_volumes.value.secret

        dynamic "versions" {
          for_each = secret_volumes.value.versions
          content {
            path    = versions.key
            version = versions.value
          }
        }
      }
    }
  }

  # No event_trigger: Pub/Sub reaches the function through the topology's push subscriptions,
  # which POST the documented push body to this plain HTTP function (docs/terraform.md). An
  # Eventarc trigger would deliver CloudEvents through an unordered subscription it manages.

  # Cloud Run checks the runtime identity's access to referenced secrets when the revision is
  # created, so the accessor grants must exist first.
  depends_on = [google_secret_manager_secret_iam_member.accessor]
}

# ---- who may invoke ---------------------------------------------------------------------

resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = var.invokers

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.main.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_service_iam_member" "public" {
  count = var.public ? 1 : 0

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.main.name
  role     = "roles/run.invoker"
  member   = "allUsers"

  lifecycle {
    precondition {
      condition     = var.trigger == "https"
      error_message = "Function ${var.name}: only HTTPS functions may be public."
    }
  }
}

# ---- what the function may use ----------------------------------------------------------

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.publish_topics

  project = var.project_id
  topic   = each.value
  role    = "roles/pubsub.publisher"
  member  = google_service_account.runtime.member
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_ids

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

resource "google_storage_bucket_iam_member" "bucket" {
  for_each = var.bucket_roles

  bucket = each.value.bucket
  role   = each.value.role
  member = google_service_account.runtime.member
}

resource "google_project_iam_member" "project" {
  for_each = var.project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.runtime.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title      = condition.value.title
      expression = condition.value.expression
    }
  }
}

# V4 signed URLs without a key file: the function signs through IAM signBlob on its own
# identity, which needs Token Creator on that identity only (not project-wide).
resource "google_service_account_iam_member" "sign_blob" {
  count = var.sign_blob_self ? 1 : 0

  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.runtime.member
}
