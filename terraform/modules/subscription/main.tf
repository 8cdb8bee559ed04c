resource "google_pubsub_subscription" "main" {
  project = var.project_id
  name    = var.name
  topic   = var.topic
  labels  = var.labels
  filter  = var.filter

  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "${var.message_retention_seconds}s"
  retain_acked_messages      = false
  enable_message_ordering    = var.ordered

  # Exactly-once delivery is a pull-only feature; push subscriptions rely on idempotent handlers
  # (every consumer de-duplicates on ce-id anyway).
  enable_exactly_once_delivery = var.push == null ? var.exactly_once : false

  # Never let an idle subscription (a quiet partner, a paused consumer) be garbage-collected.
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "${var.retry.minimum_backoff_seconds}s"
    maximum_backoff = "${var.retry.maximum_backoff_seconds}s"
  }

  dynamic "dead_letter_policy" {
    for_each = var.dead_letter == null ? [] : [var.dead_letter]
    content {
      dead_letter_topic     = dead_letter_policy.value.topic
      max_delivery_attempts = dead_letter_policy.value.max_delivery_attempts
    }
  }

  dynamic "push_config" {
    for_each = var.push == null ? [] : [var.push]
    content {
      # The wrapped push body (no no_wrapper block): the endpoint receives the documented
      # {message, subscription, deliveryAttempt} JSON.
      push_endpoint = push_config.value.endpoint

      oidc_token {
        service_account_email = push_config.value.service_account_email
        audience              = coalesce(push_config.value.audience, push_config.value.endpoint)
      }
    }
  }

  lifecycle {
    precondition {
      condition     = !(var.push != null && var.exactly_once)
      error_message = "Subscription ${var.name}: exactly-once delivery is only available on pull subscriptions."
    }

    precondition {
      condition     = var.dead_letter == null || var.pubsub_service_agent != null
      error_message = "Subscription ${var.name}: a dead-letter policy needs pubsub_service_agent (service-<number>@gcp-sa-pubsub.iam.gserviceaccount.com)."
    }
  }
}

# Dead-lettering: the Pub/Sub service agent must be able to acknowledge (subscriber) the message on
# this subscription when it forwards it. Its publisher grant on the dead-letter topic is made once,
# on that topic (the stack grants it from the topology's `publishedBy: pubsub-dead-letter-policy`).
resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  count = var.dead_letter == null ? 0 : 1

  project      = var.project_id
  subscription = google_pubsub_subscription.main.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.pubsub_service_agent}"
}

# Consumers that pull this subscription (agents, memory service, app-instances, partners).
resource "google_pubsub_subscription_iam_member" "subscriber" {
  for_each = toset(var.subscribers)

  project      = var.project_id
  subscription = google_pubsub_subscription.main.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}
