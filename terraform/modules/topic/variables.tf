variable "project_id" {
  description = "Project that owns the topic."
  type        = string
}

variable "name" {
  description = "Topic id, e.g. `learnflow.interaction.received` or `partner.acme.events`."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9._~%+-]{2,254}$", var.name)) && !startswith(lower(var.name), "goog")
    error_message = "Topic ids are 3-255 characters, start with a letter, use [A-Za-z0-9._~%+-] and must not start with \"goog\"."
  }
}

variable "ordering_key" {
  description = "Name of the field used as ordering key by publishers (documentation label; ordering itself is enabled per subscription). null when the topic is unordered."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to the topic."
  type        = map(string)
  default     = {}
}

variable "message_retention_seconds" {
  description = "Topic-level retention (enables seek/replay to a timestamp on new subscriptions); null keeps none."
  type        = number
  default     = null

  validation {
    condition     = var.message_retention_seconds == null || (try(var.message_retention_seconds >= 600 && var.message_retention_seconds <= 2678400, false))
    error_message = "Topic message retention must be between 600 s (10 min) and 2678400 s (31 days)."
  }
}

variable "persistence_regions" {
  description = "Regions where messages may be stored at rest (data residency). Empty means Google's default policy."
  type        = list(string)
  default     = []
}

variable "schema" {
  description = "Optional schema the topic enforces on publish."
  type = object({
    type       = optional(string, "AVRO")
    definition = string
    encoding   = optional(string, "JSON")
  })
  default = null

  validation {
    condition     = var.schema == null || contains(["AVRO", "PROTOCOL_BUFFER"], try(var.schema.type, ""))
    error_message = "schema.type must be AVRO or PROTOCOL_BUFFER."
  }

  validation {
    condition     = var.schema == null || contains(["JSON", "BINARY"], try(var.schema.encoding, ""))
    error_message = "schema.encoding must be JSON or BINARY."
  }
}

variable "publishers" {
  description = "Static key => IAM member (e.g. `serviceAccount:fn-x@p.iam.gserviceaccount.com`) granted roles/pubsub.publisher on this topic only. Keys must be known at plan time; members may be computed."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for m in values(var.publishers) : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "A topic must never be publishable by allUsers or allAuthenticatedUsers."
  }
}
