variable "project_id" {
  description = "Project that owns the bucket."
  type        = string
}

variable "name" {
  description = "Globally unique bucket name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$", var.name)) && !startswith(var.name, "goog")
    error_message = "Bucket names are 3-63 lower-case letters, digits, '-', '_' or '.', and must not start with \"goog\"."
  }
}

variable "location" {
  description = "Bucket location (a region keeps artifacts next to the functions)."
  type        = string
}

variable "labels" {
  description = "Labels added to the bucket."
  type        = map(string)
  default     = {}
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a non-empty bucket (dev only)."
  type        = bool
  default     = false
}

variable "cors" {
  description = "Browser origins allowed to PUT/GET via signed URLs, and the JSON file with the CORS rules (`{\"cors\": [{method, responseHeader, maxAgeSeconds}]}`, Cloud Storage JSON API names without `origin`)."
  type = object({
    origins    = list(string)
    rules_file = string
  })

  validation {
    condition     = length(var.cors.origins) > 0 && alltrue([for o in var.cors.origins : can(regex("^https?://[^/*]+$", o))])
    error_message = "cors.origins must list explicit origins such as https://app.example.com (no paths, no wildcards)."
  }
}

variable "delete_after_days" {
  description = "Object-name prefix => age in days after which objects under it are deleted. Empty by default: every upload lands under `artifacts/<artifactId>/`, where stored artifacts stay, and a lifecycle rule cannot tell stored from unverified objects. A prefix overlapping the upload prefix is refused."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for p, d in var.delete_after_days : endswith(p, "/") && d >= 1])
    error_message = "Prefixes must end with '/' and ages must be at least 1 day."
  }
}

variable "finalize_notification" {
  description = "Pub/Sub topic id receiving OBJECT_FINALIZE notifications, and the object prefix they are limited to (lfsProxy uploads to `artifacts/<artifactId>/<name>`, shared/artifacts.ts OBJECT_PREFIX)."
  type = object({
    topic              = string
    object_name_prefix = optional(string, "artifacts/")
  })

  validation {
    condition     = endswith(var.finalize_notification.object_name_prefix, "/")
    error_message = "finalize_notification.object_name_prefix must be a folder prefix ending in '/' (default artifacts/)."
  }
}

variable "gcs_service_agent" {
  description = "Email of the project's Cloud Storage service agent (data.google_storage_project_service_account)."
  type        = string

  validation {
    condition     = endswith(var.gcs_service_agent, "@gs-project-accounts.iam.gserviceaccount.com")
    error_message = "gcs_service_agent must be the Cloud Storage service agent (…@gs-project-accounts.iam.gserviceaccount.com)."
  }
}
