variable "project_id" {
  description = "Project of the secrets."
  type        = string
}

variable "secrets" {
  description = "secret id => { description, labels }. Ids: letters, digits, '-' and '_'."
  type = map(object({
    description = string
    labels      = optional(map(string), {})
  }))

  validation {
    condition     = alltrue([for id in keys(var.secrets) : can(regex("^[A-Za-z0-9_-]{1,255}$", id))])
    error_message = "Secret ids are 1-255 characters of letters, digits, '-' and '_'."
  }
}

variable "replica_locations" {
  description = "Regions the secret payloads are replicated to (user-managed replication keeps them in the EU)."
  type        = list(string)

  validation {
    condition     = length(var.replica_locations) >= 1
    error_message = "At least one replica location is required."
  }
}

variable "labels" {
  description = "Labels added to every secret."
  type        = map(string)
  default     = {}
}
