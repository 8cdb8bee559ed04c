variable "project_id" {
  description = "Project of the database."
  type        = string
}

variable "name" {
  description = "Database id; `(default)` is what the client libraries use unless told otherwise."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.name == "(default)" || can(regex("^[a-z][-a-z0-9]{2,61}[a-z0-9]$", var.name))
    error_message = "Database id must be (default) or 4-63 lower-case letters, digits and hyphens."
  }
}

variable "location" {
  description = "Firestore location: a region (e.g. europe-west3) or a multi-region (eur3). Immutable."
  type        = string
}

variable "point_in_time_recovery" {
  description = "Keep 7 days of point-in-time recovery."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse deletion of the database (Terraform abandons it instead of deleting)."
  type        = bool
  default     = true
}

variable "indexes" {
  description = "Composite indexes: key => { collection, query_scope, fields = [{ field_path, order }] }."
  type = map(object({
    collection  = string
    query_scope = optional(string, "COLLECTION")
    fields = list(object({
      field_path = string
      order      = optional(string, "ASCENDING")
    }))
  }))
  default = {}

  validation {
    condition     = alltrue([for i in values(var.indexes) : length(i.fields) >= 2 && alltrue([for f in i.fields : contains(["ASCENDING", "DESCENDING"], f.order)])])
    error_message = "Composite indexes need at least two fields ordered ASCENDING or DESCENDING."
  }
}
