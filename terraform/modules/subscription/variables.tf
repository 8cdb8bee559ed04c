variable "project_id" {
  description = "Project that owns the subscription."
  type        = string
}

variable "name" {
  description = "Subscription id, e.g. `fn.updateProgress.interaction` or `partner.acme.pull`."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.name)) && !startswith(lower(var.name), "goog")
    error_message = "Subscription ids are 3-255 characters, start with a letter, use [A-Za-z0-9._~%+-] and must not start with \"goog\"."
  }
}

variable "topic" {
  description = "Topic id (`projects/<p>/topics/<name>`) the subscription attaches to."
  type        = string
}

variable "labels" {
  description = "Labels added to the subscription."
  type        = map(string)
  default     = {}
}

variable "ordered" {
  description = "Deliver messages with the same ordering key in publish order (immutable after creation)."
  type        = bool
  default     = false
}

variable "exactly_once" {
  description = "Exactly-once delivery (pull subscriptions only)."
  type        = bool
  default     = false
}

variable "filter" {
  description = "Pub/Sub filter expression (immutable after creation); null delivers everything."
  type        = string
  default     = null

  validation {
    condition     = var.filter == null || try(length(var.filter) <= 256, false)
    error_message = "Pub/Sub filters are at most 256 characters."
  }
}

variable "ack_deadline_seconds" {
  description = "Ack deadline; for push subscriptions the time Pub/Sub waits for the endpoint's answer."
  type        = number
  default     = 60

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be between 10 and 600."
  }
}

variable "message_retention_seconds" {
  description = "How long unacknowledged messages are kept."
  type        = number
  default     = 604800

  validation {
    condition     = var.message_retention_seconds >= 600 && var.message_retention_seconds <= 2678400
    error_message = "message_retention_seconds must be between 600 (10 min) and 2678400 (31 days)."
  }
}

variable "retry" {
  description = "Exponential back-off between redeliveries of a nacked / failed message."
  type = object({
    minimum_backoff_seconds = optional(number, 10)
    maximum_backoff_seconds = optional(number, 600)
  })
  default  = {}
  nullable = false

  validation {
    condition = (
      var.retry.minimum_backoff_seconds >= 0 && var.retry.maximum_backoff_seconds <= 600 &&
      var.retry.minimum_backoff_seconds <= var.retry.maximum_backoff_seconds
    )
    error_message = "Retry back-off must satisfy 0 <= minimum <= maximum <= 600 seconds."
  }
}

variable "dead_letter" {
  description = "Dead-letter policy. Required on purpose: pass null only for the dead-letter topic's own subscription."
  type = object({
    topic                 = string
    max_delivery_attempts = optional(number, 5)
  })

  validation {
    condition     = var.dead_letter == null || try(var.dead_letter.max_delivery_attempts >= 5 && var.dead_letter.max_delivery_attempts <= 100, false)
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "pubsub_service_agent" {
  description = "Email of the project's Pub/Sub service agent (service-<number>@gcp-sa-pubsub.iam.gserviceaccount.com); needed with a dead-letter policy."
  type        = string
  default     = null
}

variable "push" {
  description = "Push delivery to an HTTPS endpoint with an OIDC token; null makes a pull subscription."
  type = object({
    endpoint              = string
    service_account_email = string
    audience              = optional(string)
  })
  default = null

  validation {
    condition     = var.push == null || (startswith(try(var.push.endpoint, ""), "https://") && !strcontains(try(var.push.endpoint, ""), "?"))
    error_message = "Push endpoints must be https:// URLs without a query string (the documented push body goes to the plain function URL)."
  }
}

variable "subscribers" {
  description = "IAM members granted roles/pubsub.subscriber on this subscription only (literal members: they key the for_each, so they must be known at plan time)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.subscribers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "A subscription must never be readable by allUsers or allAuthenticatedUsers."
  }
}
