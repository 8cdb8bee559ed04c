# Identical in envs/dev and envs/prod (a test fails if they drift). Environment differences live
# in main.tf (sizes, protection), not in what can be configured.

variable "project_id" {
  description = "Google Cloud project of this environment."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be 6-30 lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of functions, Cloud SQL, bucket and Firestore."
  type        = string
  default     = "europe-west3"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west3."
  }
}

variable "partners" {
  description = "Partner slug => { display_name, principal (IAM member), instances, sponsors, event_types, share_content, domain, hmac_version (the partner's version of the partner-hmac secret) }."
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
    error_message = "partners[*].principal must be an IAM member string such as serviceAccount:sync@partner.iam.gserviceaccount.com."
  }

  validation {
    condition     = alltrue([for p in values(var.partners) : p.domain == null || can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", p.domain))])
    error_message = "partners[*].domain must be a lower-case DNS name without scheme or path."
  }

  validation {
    condition     = alltrue([for p in values(var.partners) : p.hmac_version == null || try(p.hmac_version >= 1 && floor(p.hmac_version) == p.hmac_version, false)])
    error_message = "partners[*].hmac_version is the number gcloud printed when the partner's key was added to the partner-hmac secret."
  }
}

variable "app_instances" {
  description = "App-instance id => { display_name, principal (IAM member allowed to pull instance.<id>.content) }."
  type = map(object({
    display_name = optional(string)
    principal    = optional(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for id in keys(var.app_instances) : can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", id))])
    error_message = "App-instance ids are 1-63 lower-case letters, digits, '_' and '-'."
  }
}

variable "consumers" {
  description = "Topology consumer (memory-service, backend, agent-concepts, …, operations) => IAM members that pull its subscriptions."
  type        = map(list(string))
  default     = {}
}

variable "identity" {
  description = "Identity provider: JWKS URL, expected iss and aud of the bearer JWTs."
  type = object({
    jwks_url = string
    issuer   = string
    audience = string
  })

  validation {
    condition     = startswith(var.identity.jwks_url, "https://") && length(var.identity.issuer) > 0 && length(var.identity.audience) > 0
    error_message = "identity needs an https:// jwks_url, an issuer and an audience."
  }
}

variable "upstash_redis_rest_url" {
  description = "Upstash Redis REST URL (token: Secret Manager secret upstash-redis-rest-token)."
  type        = string

  validation {
    condition     = startswith(var.upstash_redis_rest_url, "https://")
    error_message = "upstash_redis_rest_url must be an https:// URL."
  }
}

variable "runtime_settings" {
  description = "Optional function settings (LFS_MAX_BYTES, LFS_URL_TTL_SECONDS, LFS_CONTENT_TYPES, LFS_RESUMABLE_FROM_BYTES, RATE_STUDENT_PER_MIN, RATE_STUDENT_EVENTS_PER_MIN, RATE_INSTANCE_EVENTS_PER_MIN, DEDUP_TTL_SECONDS, PG_STATEMENT_TIMEOUT_MS); unset fields keep the code's defaults."
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
}

variable "cors_origins" {
  description = "Browser origins of the web app (e.g. https://app.skillr.example): bucket CORS for signed PUT/GET, and CORS_ORIGINS on the HTTPS functions."
  type        = list(string)

  validation {
    condition     = length(var.cors_origins) > 0 && alltrue([for o in var.cors_origins : can(regex("^https?://[^/*]+$", o))])
    error_message = "cors_origins must list explicit origins (scheme://host[:port]), no wildcards or paths."
  }
}

variable "public_base_url" {
  description = "Absolute base URL of partnerRoom for its schema links; null = its cloudfunctions.net URL."
  type        = string
  default     = null
}

variable "functions" {
  description = "Optional per-function sizing overrides keyed by topology function name."
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
    condition     = alltrue([for f in values(var.functions) : f.min_instances == null || f.max_instances == null || try(f.min_instances <= f.max_instances, false)])
    error_message = "min_instances must not exceed max_instances."
  }
}
