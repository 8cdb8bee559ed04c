locals {
  cors_rules = jsondecode(file(var.cors.rules_file)).cors
}

resource "google_storage_bucket" "main" {
  project                     = var.project_id
  name                        = var.name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  versioning {
    enabled = false
  }

  # Browsers PUT the bytes straight to a V4 signed URL issued by lfsProxy. The rules (methods,
  # headers, max age) are shared/bucket-cors.json, the file the local storage emulator applies
  # too; only the origins are per environment.
  dynamic "cors" {
    for_each = local.cors_rules
    content {
      origin          = var.cors.origins
      method          = cors.value.method
      response_header = cors.value.responseHeader
      max_age_seconds = cors.value.maxAgeSeconds
    }
  }

  # Optional age-based deletes for other prefixes. None by default: uploads and stored artifacts
  # share `artifacts/<artifactId>/`, and lifecycle conditions cannot match custom metadata or the
  # artifact's Firestore state. finalizeArtifact deletes rejected uploads itself; an upload URL
  # that is never used leaves no object behind.
  dynamic "lifecycle_rule" {
    for_each = var.delete_after_days
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = [lifecycle_rule.key]
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  lifecycle {
    precondition {
      condition = alltrue([
        for p in keys(var.delete_after_days) :
        !startswith(p, var.finalize_notification.object_name_prefix) && !startswith(var.finalize_notification.object_name_prefix, p)
      ])
      error_message = "delete_after_days must not cover the upload prefix ${var.finalize_notification.object_name_prefix}: stored artifacts live there too, and a lifecycle rule would delete them."
    }
  }
}

# Cloud Storage publishes notifications as its project service agent: it must be allowed to
# publish on the notification topic (only that topic) before the notification is created.
resource "google_pubsub_topic_iam_member" "gcs_publisher" {
  project = var.project_id
  topic   = var.finalize_notification.topic
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${var.gcs_service_agent}"
}

resource "google_storage_notification" "finalize" {
  bucket             = google_storage_bucket.main.name
  topic              = var.finalize_notification.topic
  payload_format     = "JSON_API_V1"
  event_types        = ["OBJECT_FINALIZE"]
  object_name_prefix = var.finalize_notification.object_name_prefix

  depends_on = [google_pubsub_topic_iam_member.gcs_publisher]
}
