# Plan-time consistency checks between the topology file and the variables. They fail `plan`
# (not just warn), so a topology edit that would leave a function without its trigger, or a
# partner pointing at an unknown instance, never reaches production.

locals {
  pubsub_functions = { for name, f in local.functions : name => f.topics if f.trigger == "pubsub" }

  # (function, topic) pairs the topology wants vs the fn.* subscriptions that deliver them.
  wanted_triggers   = toset(flatten([for name, topics in local.pubsub_functions : [for t in topics : "${name} <- ${t}"]]))
  declared_triggers = toset([for name, fn in local.subscription_function : "${fn} <- ${local.subscriptions[name].topic}"])

  mirrored_event_types = toset(compact([
    for t in try(local.pubsub_functions["mirrorToPartners"], []) : try(local.topics[t].eventType, "")
  ]))

  known_publishers = setunion(toset(keys(local.functions)), toset(["cloud-storage", "pubsub-dead-letter-policy"]))

  # Every name a function's topology `env` lists must have a decided value (possibly null).
  known_env_names = setunion(toset(keys(local.env_values)), toset(keys(local.secret_env_values)), toset(["PGUSER"]))
  unknown_env     = flatten([for name, f in local.functions : [for k in f.env : "${name}: ${k}" if !contains(local.known_env_names, k)]])

  # Access must agree with what the function reads.
  access_vs_env = flatten([
    for name, f in local.functions : [
      for flag, envname in { cloudsql = "CLOUD_SQL_INSTANCE", redis = "UPSTASH_REDIS_REST_TOKEN", partner_hmac = "PARTNER_SECRETS_DIR" } :
      "${name}.${flag}" if local.function_access[name][flag] != contains(f.env, envname)
    ]
  ])

  # Push ack deadline vs function timeout (30 s margin for the response to reach Pub/Sub).
  ack_too_short = [
    for name, fn in local.subscription_function : name
    if local.function_runtime[fn].timeout_seconds + 30 > local.subscription_ack_deadline[name]
  ]
  consumers = toset(compact([for s in local.topology.subscriptions : try(s.consumer, "")]))
}

resource "terraform_data" "topology_checks" {
  input = sha256(jsonencode(local.topology))

  lifecycle {
    precondition {
      condition     = local.wanted_triggers == local.declared_triggers
      error_message = "Every Pub/Sub function topic needs exactly one fn.* subscription for that function (and no other). Missing: ${join(", ", setsubtract(local.wanted_triggers, local.declared_triggers))}; unexpected: ${join(", ", setsubtract(local.declared_triggers, local.wanted_triggers))}."
    }

    precondition {
      condition     = alltrue([for s in local.topology.subscriptions : contains(keys(local.topics), s.topic)]) && contains(keys(local.topics), local.topology.patterns.instance.subscription.topic)
      error_message = "Every subscription (and the instance pattern) must reference a topology topic."
    }

    precondition {
      condition     = alltrue([for s in local.topology.subscriptions : (s.topic == local.topology.deadLetterTopic) == !try(s.deadLetter, true)])
      error_message = "Exactly the subscriptions of the dead-letter topic have deadLetter: false; every other subscription is dead-lettered."
    }

    precondition {
      condition     = alltrue([for t in local.topology.topics : contains(local.known_publishers, t.publishedBy)])
      error_message = "Every topic's publishedBy must be a topology function, cloud-storage or pubsub-dead-letter-policy."
    }

    precondition {
      condition     = length([for t in local.topology.topics : t if t.publishedBy == "cloud-storage"]) == 1
      error_message = "Exactly one topic receives the Cloud Storage finalize notifications."
    }

    precondition {
      condition     = toset(keys(local.function_access)) == toset(keys(local.functions))
      error_message = "local.function_access (stack/functions.tf) must list exactly the topology's functions."
    }

    precondition {
      condition     = length(local.unknown_env) == 0
      error_message = "A topology function lists an environment variable stack/functions.tf has no value for (add it to local.env_values, null if it stays unset): ${join(", ", local.unknown_env)}."
    }

    precondition {
      condition     = length(local.access_vs_env) == 0
      error_message = "local.function_access disagrees with the topology env lists (cloudsql <-> CLOUD_SQL_INSTANCE, redis <-> UPSTASH_REDIS_REST_TOKEN, partner_hmac <-> PARTNER_SECRETS_DIR): ${join(", ", local.access_vs_env)}."
    }

    precondition {
      condition     = toset(keys(local.database_grants)) == toset([for name, a in local.function_access : name if a.cloudsql])
      error_message = "local.database_grants (stack/jobs.tf) must name exactly the functions with Cloud SQL access."
    }

    precondition {
      condition     = length(local.ack_too_short) == 0
      error_message = "Push ack deadline must exceed the function timeout by 30 s or more: ${join(", ", local.ack_too_short)}."
    }

    precondition {
      condition     = alltrue([for s in try(local.topology.schedules, []) : contains(keys(local.functions), s.function) && startswith(s.path, "/")])
      error_message = "Every topology schedule names a topology function and a path starting with /."
    }

    precondition {
      condition     = alltrue([for name in keys(var.functions) : contains(keys(local.functions), name)])
      error_message = "var.functions has sizing for a function that is not in the topology."
    }

    precondition {
      condition     = alltrue([for c in keys(var.consumers) : contains(local.consumers, c)])
      error_message = "var.consumers names a consumer that no topology subscription has (${join(", ", local.consumers)})."
    }

    precondition {
      condition     = alltrue(flatten([for p in values(var.partners) : [for i in p.instances : contains(keys(var.app_instances), i)]]))
      error_message = "Every partner instance must be declared in app_instances."
    }

    precondition {
      condition     = alltrue([for p in values(var.partners) : p.hmac_version != null])
      error_message = "Every partner needs hmac_version, its version of the partner-hmac secret (mirrorToPartners reads ${local.partner_secrets_dir}/<slug>). Missing for: ${join(", ", [for slug, p in var.partners : slug if p.hmac_version == null])}. Add the key with gcloud first (docs/terraform.md)."
    }

    precondition {
      condition     = alltrue(flatten([for p in values(var.partners) : [for t in p.event_types : contains(local.mirrored_event_types, t)]]))
      error_message = "Partner event_types must be among the types mirrorToPartners receives: ${join(", ", local.mirrored_event_types)}."
    }
  }
}
