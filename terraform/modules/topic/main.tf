locals {
  # Pub/Sub has no per-topic ordering switch: ordering is a property of each subscription plus
  # the publisher's `messageOrdering` option. The topic records which attribute is the ordering
  # key (a label, lower-cased because labels must be) so operators can see it in the console.
  ordering_labels = var.ordering_key == null ? {} : { "ldr-ordering-key" = lower(var.ordering_key) }
}

resource "google_pubsub_schema" "definition" {
  count = var.schema == null ? 0 : 1

  project    = var.project_id
  name       = "${replace(var.name, ".", "-")}-schema"
  type       = var.schema.type
  definition = var.schema.definition
}

resource "google_pubsub_topic" "main" {
  project = var.project_id
  name    = var.name
  labels  = merge(var.labels, local.ordering_labels)

  message_retention_duration = var.message_retention_seconds == null ? null : "${var.message_retention_seconds}s"

  dynamic "message_storage_policy" {
    for_each = length(var.persistence_regions) == 0 ? [] : [var.persistence_regions]
    content {
      allowed_persistence_regions = message_storage_policy.value
    }
  }

  dynamic "schema_settings" {
    for_each = var.schema == null ? [] : [var.schema]
    content {
      schema   = google_pubsub_schema.definition[0].id
      encoding = schema_settings.value.encoding
    }
  }
}

# Topic-scoped publisher grants only (never project-wide roles/pubsub.publisher).
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = var.publishers

  project = var.project_id
  topic   = google_pubsub_topic.main.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}
