# ---- topics: one per topology topic ------------------------------------------------------

module "topic" {
  source   = "../modules/topic"
  for_each = { for t in local.topology.topics : t.name => t }

  project_id          = var.project_id
  name                = each.key
  ordering_key        = each.value.orderingKey
  labels              = local.labels
  persistence_regions = [var.region]

  # Function publishers are granted by each function module (all of a function's access in one
  # place); Cloud Storage's grant is made by the storage module. What remains is the Pub/Sub
  # service agent on the dead-letter topic, which forwards dead-lettered messages.
  publishers = {
    for k, m in { pubsub-service-agent = "serviceAccount:${local.pubsub_service_agent}" } : k => m
    if each.value.publishedBy == "pubsub-dead-letter-policy"
  }

  depends_on = [google_project_service.main]
}

locals {
  dead_letter = {
    topic                 = module.topic[local.topology.deadLetterTopic].id
    max_delivery_attempts = local.defaults.maxDeliveryAttempts
  }

  retry = {
    minimum_backoff_seconds = local.defaults.minimumBackoffSeconds
    maximum_backoff_seconds = local.defaults.maximumBackoffSeconds
  }

  # Push subscriptions: Pub/Sub waits up to the ack deadline for the function's answer, and a
  # function is cut off at its timeout (60 s, finalizeArtifact 540 s). 600 s (the maximum) is
  # above every timeout, so a slow run answers (or times out with a 5xx, a retry) before Pub/Sub
  # gives up on it, and no message is delivered twice while its first run is still going.
  # checks.tf fails the plan if a timeout comes within 30 s of it.
  push_ack_deadline_seconds = 600
}

# Identity Pub/Sub uses to call the event functions (OIDC token on every push).
resource "google_service_account" "pubsub_push" {
  project      = var.project_id
  account_id   = "pubsub-push"
  display_name = "Pub/Sub push to event functions"
  description  = "Signs the OIDC tokens of the fn.* push subscriptions; run.invoker on event functions only."

  depends_on = [google_project_service.main]
}

# Lets the Pub/Sub service agent mint tokens for that identity only (needed for projects created
# before April 2021; harmless otherwise).
resource "google_service_account_iam_member" "pubsub_push_token_creator" {
  service_account_id = google_service_account.pubsub_push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_service_agent}"
}

# ---- subscriptions: one per topology subscription ----------------------------------------
# fn.* subscriptions are how event functions are triggered in production: push subscriptions to
# the function URL (OIDC), ordered as declared, with the topology's retry policy and
# dead-lettering. All others are pull subscriptions with exactly-once delivery for their consumer.

locals {
  # subscription name => function it triggers (fn.* subscriptions only).
  subscription_function = { for s in local.topology.subscriptions : s.name => s.function if try(s.function, null) != null }

  # The documented push contract (SPEC §1): Pub/Sub POSTs the push body
  # {message{data, attributes, messageId, publishTime, orderingKey}, subscription, deliveryAttempt}
  # to the function's own URL, with an OIDC token whose audience is that URL. No query
  # parameters and no no_wrapper: the function is a plain HTTP function reading that body.
  push = {
    for name, fn in local.subscription_function : name => {
      endpoint              = module.function[fn].uri
      audience              = module.function[fn].uri
      service_account_email = google_service_account.pubsub_push.email
    }
  }

  subscription_ack_deadline = {
    for name, s in local.subscriptions : name => try(
      s.ackDeadlineSeconds,
      contains(keys(local.subscription_function), name) ? local.push_ack_deadline_seconds : local.defaults.ackDeadlineSeconds,
    )
  }

  subscription_subscribers = {
    for name, s in local.subscriptions : name => try(var.consumers[s.consumer], [])
  }
}

module "subscription" {
  source   = "../modules/subscription"
  for_each = { for s in local.topology.subscriptions : s.name => s }

  project_id                = var.project_id
  name                      = each.key
  topic                     = module.topic[each.value.topic].id
  labels                    = local.labels
  ordered                   = each.value.ordered
  filter                    = try(each.value.filter, null)
  ack_deadline_seconds      = local.subscription_ack_deadline[each.key]
  message_retention_seconds = local.defaults.messageRetentionSeconds
  # a subscription may set its own back-off (ops.deadletter: released messages come back at once,
  # so listing dead letters and then replaying them finds them)
  retry = try({
    minimum_backoff_seconds = each.value.backoffSeconds[0]
    maximum_backoff_seconds = each.value.backoffSeconds[1]
  }, local.retry)
  pubsub_service_agent = local.pubsub_service_agent

  # Every subscription is dead-lettered except the dead-letter topic's own (deadLetter: false).
  dead_letter = try(each.value.deadLetter, true) ? local.dead_letter : null

  # Push to the function for fn.* subscriptions; pull (exactly-once) for every other consumer.
  push         = try(local.push[each.key], null)
  exactly_once = contains(keys(local.push), each.key) ? false : try(each.value.exactlyOnce, true)
  subscribers  = local.subscription_subscribers[each.key]
}

# ---- per app-instance content subscriptions (topology pattern "instance") ----------------

module "instance_subscription" {
  source   = "../modules/subscription"
  for_each = var.app_instances

  project_id                = var.project_id
  name                      = replace(local.topology.patterns.instance.subscription.name, "{id}", each.key)
  topic                     = module.topic[local.topology.patterns.instance.subscription.topic].id
  labels                    = merge(local.labels, { instance = each.key })
  filter                    = replace(local.topology.patterns.instance.subscription.filter, "{id}", each.key)
  ordered                   = local.topology.patterns.instance.subscription.ordered
  exactly_once              = try(local.topology.patterns.instance.subscription.exactlyOnce, true)
  ack_deadline_seconds      = local.defaults.ackDeadlineSeconds
  message_retention_seconds = local.defaults.messageRetentionSeconds
  retry                     = local.retry
  dead_letter               = local.dead_letter
  pubsub_service_agent      = local.pubsub_service_agent
  subscribers               = compact([each.value.principal])
}
