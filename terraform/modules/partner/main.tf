locals {
  # The partner record partners/{slug} as the code reads it (the Partner type of
  # shared/registry.ts: slug, displayName, instances, sponsors, eventTypes, shareContent, principal,
  # domain), in the Firestore REST "typed value" encoding. mirrorToPartners and partnerRoom take
  # the slug from the record: without it every mirrored event fails and the room pulls
  # partner.undefined.pull. Topic and subscription names are not stored: the code derives them
  # from the topology pattern. Empty arrays are sent as `{}` (what the API returns).
  lists = {
    instances  = var.instances
    sponsors   = var.sponsors
    eventTypes = var.event_types
  }

  record_fields = merge(
    {
      slug         = { stringValue = var.slug }
      displayName  = { stringValue = var.display_name }
      shareContent = { booleanValue = var.share_content }
      principal    = { stringValue = var.principal }
    },
    { for k, v in local.lists : k => { arrayValue = { values = [for x in v : { stringValue = x }] } } if length(v) > 0 },
    { for k, v in local.lists : k => { arrayValue = {} } if length(v) == 0 },
    { for d in compact([var.domain]) : "domain" => { stringValue = d } },
  )
}

# The partner's scoped stream: only mirrorToPartners may publish to it.
module "topic" {
  source = "../topic"

  project_id          = var.project_id
  name                = var.topic_name
  ordering_key        = var.ordering_key
  labels              = { partner = var.slug }
  persistence_regions = var.persistence_regions
  publishers          = { mirror-to-partners = var.mirror_service_account }
}

module "subscription" {
  source = "../subscription"

  project_id                = var.project_id
  name                      = var.subscription_name
  topic                     = module.topic.id
  labels                    = { partner = var.slug }
  ordered                   = var.delivery.ordered
  exactly_once              = var.delivery.exactly_once
  ack_deadline_seconds      = var.delivery.ack_deadline_seconds
  message_retention_seconds = var.delivery.message_retention_seconds
  retry = {
    minimum_backoff_seconds = var.delivery.minimum_backoff_seconds
    maximum_backoff_seconds = var.delivery.maximum_backoff_seconds
  }
  dead_letter = {
    topic                 = var.dead_letter_topic
    max_delivery_attempts = var.delivery.max_delivery_attempts
  }
  pubsub_service_agent = var.pubsub_service_agent
}

# Who may consume partner.<slug>.pull: the partner's own principal (direct Pub/Sub pull) and the
# partnerRoom function, which serves the same stream over HTTPS after checking the partner token.
# Bound on this subscription only; nothing else in the project is granted to the partner.
resource "google_pubsub_subscription_iam_member" "consumer" {
  for_each = {
    partner = var.principal
    room    = var.room_service_account
  }

  project      = var.project_id
  subscription = module.subscription.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

# The partner record (Firestore partners/{slug}) — what "adding a partner" means for the code.
resource "google_firestore_document" "main" {
  project     = var.project_id
  database    = var.firestore_database
  collection  = "partners"
  document_id = var.slug
  fields      = jsonencode(local.record_fields)
}

# Custom domain: a Google-managed certificate in the partner gateway's certificate map. The
# gateway's URL map sends https://<domain>/… to partnerRoom as /p/<slug>/….
resource "google_certificate_manager_certificate" "domain" {
  count = var.domain == null ? 0 : 1

  project     = var.project_id
  name        = "partner-${var.slug}"
  description = "Custom domain of partner ${var.slug}"
  labels      = { partner = var.slug }

  managed {
    domains = [var.domain]
  }
}

resource "google_certificate_manager_certificate_map_entry" "domain" {
  count = var.domain == null ? 0 : 1

  project      = var.project_id
  name         = "partner-${var.slug}"
  map          = var.certificate_map
  hostname     = var.domain
  certificates = [google_certificate_manager_certificate.domain[0].id]

  lifecycle {
    precondition {
      condition     = var.certificate_map != null
      error_message = "Partner ${var.slug} has a domain but no certificate_map (the partner gateway) was given."
    }
  }
}
