variable "project_id" {
  description = "Project of the partner's resources."
  type        = string
}

variable "slug" {
  description = "Partner slug (path /p/<slug>, topic partner.<slug>.events)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,28}[a-z0-9]$", var.slug))
    error_message = "Partner slugs are 3-30 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "display_name" {
  description = "Human name shown in the partner manifest."
  type        = string

  validation {
    condition     = length(trimspace(var.display_name)) > 0 && length(var.display_name) <= 200
    error_message = "display_name must be 1-200 characters."
  }
}

variable "principal" {
  description = "IAM member of the partner allowed to pull its own subscription (e.g. serviceAccount:sync@partner.iam.gserviceaccount.com)."
  type        = string

  validation {
    condition     = can(regex("^(user|serviceAccount|group|principal|principalSet):.+", var.principal))
    error_message = "principal must be an IAM member string (user:, serviceAccount:, group:, principal:, principalSet:) - never allUsers/allAuthenticatedUsers/domain."
  }
}

variable "room_service_account" {
  description = "IAM member of the partnerRoom function (serves HTTPS pull/ack of the same subscription)."
  type        = string
}

variable "mirror_service_account" {
  description = "IAM member of the mirrorToPartners function (the only publisher on the partner topic)."
  type        = string
}

variable "topic_name" {
  description = "Topic name from the topology pattern (partner.<slug>.events)."
  type        = string
}

variable "subscription_name" {
  description = "Subscription name from the topology pattern (partner.<slug>.pull)."
  type        = string
}

variable "ordering_key" {
  description = "Ordering-key field on the partner topic (learnerRef)."
  type        = string
  default     = "learnerRef"
}

variable "delivery" {
  description = "Subscription delivery settings (topology defaults and pattern)."
  type = object({
    ordered                   = optional(bool, true)
    exactly_once              = optional(bool, true)
    ack_deadline_seconds      = optional(number, 60)
    message_retention_seconds = optional(number, 604800)
    minimum_backoff_seconds   = optional(number, 10)
    maximum_backoff_seconds   = optional(number, 600)
    max_delivery_attempts     = optional(number, 5)
  })
  default  = {}
  nullable = false
}

variable "dead_letter_topic" {
  description = "Topic id of learnflow.deadletter."
  type        = string
}

variable "pubsub_service_agent" {
  description = "Email of the Pub/Sub service agent (forwards to the dead-letter topic)."
  type        = string
}

variable "persistence_regions" {
  description = "Message storage regions of the partner topic."
  type        = list(string)
  default     = []
}

variable "instances" {
  description = "App-instance ids this partner runs."
  type        = list(string)
  default     = []
}

variable "sponsors" {
  description = "Sponsor slugs this partner owns."
  type        = list(string)
  default     = []
}

variable "event_types" {
  description = "CloudEvent types mirrored to this partner."
  type        = list(string)

  validation {
    condition     = length(var.event_types) > 0 && alltrue([for t in var.event_types : can(regex("^learnflow\\.[a-z.]+\\.v[0-9]+$", t))])
    error_message = "event_types must list learnflow.*.vN CloudEvent types."
  }
}

variable "share_content" {
  description = "Mirror free text and code too (default: dropped)."
  type        = bool
  default     = false
}

variable "firestore_database" {
  description = "Firestore database id that holds partners/{slug}."
  type        = string
}

variable "domain" {
  description = "Custom domain of the partner's room (e.g. room.acme.example); null uses /p/<slug> on the shared URL."
  type        = string
  default     = null

  validation {
    condition     = var.domain == null || can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.domain))
    error_message = "domain must be a lower-case DNS name without scheme or path."
  }
}

variable "certificate_map" {
  description = "Name of the partner gateway's Certificate Manager map (required when domain is set)."
  type        = string
  default     = null
}
