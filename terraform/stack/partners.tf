# ---- partners (topology pattern "partner") -------------------------------------------------

locals {
  partner_domains = { for slug, p in var.partners : slug => p.domain if p.domain != null }
}

module "partner" {
  source   = "../modules/partner"
  for_each = var.partners

  project_id        = var.project_id
  slug              = each.key
  display_name      = each.value.display_name
  principal         = each.value.principal
  topic_name        = replace(local.topology.patterns.partner.topic, "{slug}", each.key)
  subscription_name = replace(local.topology.patterns.partner.subscription.name, "{slug}", each.key)
  ordering_key      = local.topology.patterns.partner.orderingKey
  instances         = each.value.instances
  sponsors          = each.value.sponsors
  event_types       = each.value.event_types
  share_content     = each.value.share_content
  domain            = each.value.domain

  delivery = {
    ordered                   = local.topology.patterns.partner.subscription.ordered
    exactly_once              = try(local.topology.patterns.partner.subscription.exactlyOnce, true)
    ack_deadline_seconds      = local.defaults.ackDeadlineSeconds
    message_retention_seconds = local.defaults.messageRetentionSeconds
    minimum_backoff_seconds   = local.defaults.minimumBackoffSeconds
    maximum_backoff_seconds   = local.defaults.maximumBackoffSeconds
    max_delivery_attempts     = local.defaults.maxDeliveryAttempts
  }
  dead_letter_topic    = local.dead_letter.topic
  pubsub_service_agent = local.pubsub_service_agent
  persistence_regions  = [var.region]

  mirror_service_account = module.function["mirrorToPartners"].service_account_member
  room_service_account   = module.function["partnerRoom"].service_account_member
  firestore_database     = module.firestore.name
  certificate_map        = try(module.partner_gateway[0].certificate_map, null)

  # Pub/Sub, Firestore and Certificate Manager must be enabled before a partner's resources.
  depends_on = [google_project_service.main]
}

# One load balancer for all partner custom domains (only when at least one partner has one).
module "partner_gateway" {
  source = "../modules/partner-gateway"
  count  = length(local.partner_domains) > 0 ? 1 : 0

  project_id        = var.project_id
  region            = var.region
  name              = "ldr-partners-${var.environment}"
  room_service_name = module.function["partnerRoom"].name
  hosts             = local.partner_domains

  depends_on = [google_project_service.main]
}
