variable "project_id" {
  description = "Google Cloud project of this environment."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be 6-30 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of functions, Cloud SQL, bucket, functions subnet (and default Firestore location)."
  type        = string
  default     = "europe-west3"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west3."
  }
}

variable "environment" {
  description = "Environment name (dev or prod); used in names and labels."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "labels" {
  description = "Extra labels on every labelled resource."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect Cloud SQL, Firestore and the artifacts bucket against deletion."
  type        = bool
  default     = true
}

variable "log_level" {
  description = "LOG_LEVEL of the functions (read by shared/log.ts, outside shared/config.ts)."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["trace", "debug", "info", "warn", "error", "fatal"], var.log_level)
    error_message = "log_level must be one of trace, debug, info, warn, error, fatal."
  }
}

variable "partners" {
  description = "Sponsors / partners: slug => record. Adding one provisions its topic, pull subscription, access, Firestore record and (optional) custom domain; hmac_version is the partner's version of the partner-hmac secret (required before a full plan)."
  type = map(object({
    display_name  = string
    principal     = string
    instances     = optional(list(string), [])
    sponsors      = optional(list(string), [])
    event_types   = optional(list(string), ["learnflow.interaction.v1", "learnflow.progress.updated.v1", "learnflow.content.published.v1", "learnflow.artifact.stored.v1"])
    share_content = optional(bool, false)
    domain        = optional(string)
    hmac_version  = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for slug in keys(var.partners) : can(regex("^[a-z][a-z0-9-]{1,28}[a-z0-9]$", slug))])
    error_message = "Partner slugs are 3-30 lower-case letters, digits and hyphens, starting with a letter."
  }

  validation {
    condition     = alltrue([for p in values(var.partners) : can(regex("^(user|serviceAccount|group|principal|principalSet):.+", p.principal))])
    error_message = "partners[*].principal must be an IAM member string (user:, serviceAccount:, group:, principal:, principalSet:)."
  }

  validation {
    condition     = length(distinct(compact([for p in values(var.partners) : p.domain]))) == length(compact([for p in values(var.partners) : p.domain]))
    error_message = "Two partners cannot share a domain."
  }

  validation {
    condition     = alltrue([for p in values(var.partners) : p.hmac_version == null || try(p.hmac_version >= 1 && floor(p.hmac_version) == p.hmac_version, false)])
    error_message = "partners[*].hmac_version is a version number (1, 2, …) of the partner-hmac secret."
  }

  validation {
    condition     = length(distinct(compact([for p in values(var.partners) : p.hmac_version == null ? "" : tostring(p.hmac_version)]))) == length([for p in values(var.partners) : p if p.hmac_version != null])
    error_message = "Two partners cannot share an hmac_version: their learnerRefs would be linkable."
  }
}

variable "app_instances" {
  description = "SkillR app-instances: id => { display_name, principal }. Each gets instance.<id>.content; principal (optional) may pull it."
  type = map(object({
    display_name = optional(string)
    principal    = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for id in keys(var.app_instances) : can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", id))])
    error_message = "App-instance ids are 1-63 lower-case letters, digits, '_' and '-'."
  }

  validation {
    condition     = alltrue([for i in values(var.app_instances) : i.principal == null || can(regex("^(user|serviceAccount|group|principal|principalSet):.+", i.principal))])
    error_message = "app_instances[*].principal must be an IAM member string or null."
  }
}

variable "consumers" {
  description = "Topology consumer name (memory-service, backend, agent-*, operations) => IAM members allowed to pull its subscriptions."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue(flatten([for members in values(var.consumers) : [for m in members : can(regex("^(user|serviceAccount|group|principal|principalSet):.+", m))]]))
    error_message = "Consumers must be IAM member strings (never allUsers / allAuthenticatedUsers)."
  }
}

variable "identity" {
  description = "JWT verification settings of the HTTPS functions."
  type = object({
    jwks_url = string
    issuer   = string
    audience = string
  })

  validation {
    condition     = startswith(var.identity.jwks_url, "https://")
    error_message = "identity.jwks_url must be an https:// URL."
  }
}

variable "upstash_redis_rest_url" {
  description = "Upstash Redis REST endpoint (the token goes into Secret Manager, not here)."
  type        = string

  validation {
    condition     = startswith(var.upstash_redis_rest_url, "https://")
    error_message = "upstash_redis_rest_url must be an https:// URL."
  }
}

variable "function_defaults" {
  description = "Sizing defaults per trigger kind (https / pubsub); unset fields keep the stack's defaults."
  type = map(object({
    memory          = optional(string)
    cpu             = optional(string)
    timeout_seconds = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    concurrency     = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for k in keys(var.function_defaults) : contains(["https", "pubsub"], k)])
    error_message = "function_defaults keys are https and pubsub."
  }
}

variable "functions" {
  description = "Per-function sizing overrides keyed by topology function name (e.g. ingestInteraction)."
  type = map(object({
    memory          = optional(string)
    cpu             = optional(string)
    timeout_seconds = optional(number)
    min_instances   = optional(number)
    max_instances   = optional(number)
    concurrency     = optional(number)
  }))
  default = {}
}

variable "cloudsql" {
  description = "Cloud SQL machine, availability and backup settings (see modules/cloudsql)."
  type = object({
    tier               = optional(string, "db-custom-1-3840")
    availability_type  = optional(string, "ZONAL")
    disk_size_gb       = optional(number, 20)
    backup_start_time  = optional(string, "02:00")
    retained_backups   = optional(number, 14)
    log_retention_days = optional(number, 7)
  })
  default  = {}
  nullable = false
}

variable "firestore" {
  description = "Firestore location (null = region) and point-in-time recovery."
  type = object({
    location               = optional(string)
    point_in_time_recovery = optional(bool, true)
  })
  default  = {}
  nullable = false
}

variable "runtime_settings" {
  description = "Tunable function settings, set as the env vars the code reads, only on functions whose topology `env` lists them. Unset (null) fields are not set, so the code's defaults apply."
  type = object({
    lfs_max_bytes                = optional(number)
    lfs_url_ttl_seconds          = optional(number)
    lfs_content_types            = optional(list(string))
    lfs_resumable_from_bytes     = optional(number)
    rate_student_per_min         = optional(number)
    rate_student_events_per_min  = optional(number)
    rate_instance_events_per_min = optional(number)
    dedup_ttl_seconds            = optional(number)
    pg_statement_timeout_ms      = optional(number)
  })
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for k, v in var.runtime_settings : v == null || k == "lfs_content_types" || try(v >= 1 && floor(v) == v, false)])
    error_message = "runtime_settings numbers are positive integers."
  }
}

variable "cors_origins" {
  description = "Browser origins allowed to call the HTTPS functions and to PUT/GET the artifacts bucket through signed URLs (bucket CORS, and CORS_ORIGINS comma-separated on every function that lists it)."
  type        = list(string)

  validation {
    condition     = length(var.cors_origins) > 0 && alltrue([for o in var.cors_origins : can(regex("^https?://[^/*,]+$", o))])
    error_message = "cors_origins must list explicit origins (scheme://host[:port]), no wildcards, paths or commas."
  }
}

variable "public_base_url" {
  description = "Absolute base URL of partnerRoom (PUBLIC_BASE_URL, used in its schema links); null = its cloudfunctions.net URL."
  type        = string
  default     = null

  validation {
    condition     = var.public_base_url == null || can(regex("^https://[^/]+(/.*[^/])?$", var.public_base_url))
    error_message = "public_base_url must be an https:// URL without a trailing slash."
  }
}

variable "network" {
  description = "Subnet of the Direct VPC egress interfaces (functions that use Cloud SQL, the migration job)."
  type = object({
    functions_cidr = optional(string, "10.8.0.0/22")
  })
  default  = {}
  nullable = false
}
