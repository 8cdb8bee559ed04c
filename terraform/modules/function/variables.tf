variable "project_id" {
  description = "Project the function is deployed to."
  type        = string
}

variable "region" {
  description = "Region of the function (and its Cloud Run service)."
  type        = string
}

variable "name" {
  description = "Function / Cloud Run service name (lower-case kebab case, e.g. `ingest-interaction`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.name))
    error_message = "Function names are lower-case letters, digits and hyphens, at most 49 characters, starting with a letter."
  }
}

variable "entry_point" {
  description = "Name the function is registered under with the functions-framework (e.g. `ingestInteraction`)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z_$][A-Za-z0-9_$]*$", var.entry_point))
    error_message = "entry_point must be a JavaScript identifier."
  }
}

variable "description" {
  description = "Human description of the function."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to the function."
  type        = map(string)
  default     = {}
}

variable "trigger" {
  description = "`https` (called over HTTP by clients) or `pubsub` (called by Pub/Sub push or an Eventarc trigger)."
  type        = string

  validation {
    condition     = contains(["https", "pubsub"], var.trigger)
    error_message = "trigger must be https or pubsub."
  }
}

variable "public" {
  description = "Grant roles/run.invoker to allUsers (HTTPS functions that authenticate requests themselves)."
  type        = bool
  default     = false
}

variable "invokers" {
  description = "Static key => IAM member granted roles/run.invoker on this function only (e.g. { pubsub-push = <member> }). Keys must be known at plan time; members may be computed."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for m in values(var.invokers) : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Use public = true (HTTPS only) instead of listing allUsers/allAuthenticatedUsers as invokers."
  }
}

variable "source_object" {
  description = "The uploaded build artifact (zip of package.json, package-lock.json and dist/): bucket and object name (the stack names it by the archive's SHA-256, so a new build is a new object and redeploys)."
  type = object({
    bucket = string
    object = string
  })

  validation {
    condition     = endswith(var.source_object.object, ".zip")
    error_message = "source_object.object must be a .zip object."
  }
}

variable "runtime" {
  description = "Cloud Functions runtime."
  type        = string
  default     = "nodejs22"

  validation {
    condition     = can(regex("^nodejs(20|22|24)$", var.runtime))
    error_message = "runtime must be nodejs20, nodejs22 or nodejs24."
  }
}

variable "build" {
  description = "Build settings: dedicated build service account (`projects/<p>/serviceAccounts/<email>`), Artifact Registry repository, build-time env."
  type = object({
    service_account       = optional(string)
    docker_repository     = optional(string)
    environment_variables = optional(map(string), {})
  })
  default  = {}
  nullable = false
}

variable "service_account" {
  description = "The function's own runtime service account."
  type = object({
    account_id   = string
    display_name = optional(string)
  })

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{4,28}[a-z0-9])$", var.service_account.account_id))
    error_message = "service_account.account_id must be 6-30 characters: lower-case letters, digits, hyphens, starting with a letter."
  }
}

variable "runtime_config" {
  description = "Instance sizing and scaling."
  type = object({
    memory          = optional(string, "512Mi")
    cpu             = optional(string, "1")
    timeout_seconds = optional(number, 60)
    min_instances   = optional(number, 0)
    max_instances   = optional(number, 20)
    concurrency     = optional(number, 80)
    ingress         = optional(string, "ALLOW_ALL")
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.runtime_config.concurrency >= 1 && var.runtime_config.concurrency <= 1000
    error_message = "concurrency must be between 1 and 1000."
  }

  validation {
    condition     = var.runtime_config.concurrency == 1 || tonumber(var.runtime_config.cpu) >= 1
    error_message = "Concurrency above 1 needs at least 1 vCPU."
  }

  validation {
    condition     = var.runtime_config.min_instances >= 0 && var.runtime_config.min_instances <= var.runtime_config.max_instances
    error_message = "Need 0 <= min_instances <= max_instances."
  }

  validation {
    condition     = var.runtime_config.timeout_seconds >= 1 && var.runtime_config.timeout_seconds <= 3600
    error_message = "timeout_seconds must be between 1 and 3600."
  }

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.runtime_config.ingress)
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "vpc" {
  description = "Direct VPC egress for private egress (Cloud SQL private IP): network and subnetwork ids; null for none. No Serverless VPC Access connector."
  type = object({
    network    = string
    subnetwork = string
    egress     = optional(string, "VPC_EGRESS_PRIVATE_RANGES_ONLY")
  })
  default = null

  validation {
    condition     = var.vpc == null || contains(["VPC_EGRESS_PRIVATE_RANGES_ONLY", "VPC_EGRESS_ALL_TRAFFIC"], try(var.vpc.egress, ""))
    error_message = "vpc.egress must be VPC_EGRESS_PRIVATE_RANGES_ONLY or VPC_EGRESS_ALL_TRAFFIC."
  }
}

variable "env_vars" {
  description = "Plain environment variables (typically merged `env_vars` outputs of other modules)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.env_vars) : can(regex("^[A-Z_][A-Z0-9_]*$", k))])
    error_message = "Environment variable names must be UPPER_SNAKE_CASE."
  }
}

variable "secret_env_vars" {
  description = "Environment variables resolved from Secret Manager: NAME => { secret = <secret id>, version }. The function gets secretAccessor on exactly these secrets."
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  default = {}

  validation {
    condition     = alltrue([for k in keys(var.secret_env_vars) : can(regex("^[A-Z_][A-Z0-9_]*$", k))])
    error_message = "Secret environment variable names must be UPPER_SNAKE_CASE."
  }
}

variable "secret_volumes" {
  description = "Secret Manager secrets mounted as files: mount path => { secret = <secret id>, versions = { <file name> = <version> } }. The file <mount path>/<file name> holds that version. One secret per mount path. The function gets secretAccessor on each secret."
  type = map(object({
    secret   = string
    versions = map(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for p in keys(var.secret_volumes) : can(regex("^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$", p)) && !can(regex("^/(cloudsql|dev|pod|proc|sys|var/log)(/|$)", p))])
    error_message = "secret_volumes keys are absolute mount paths, not under /cloudsql, /dev, /pod, /proc, /sys or /var/log."
  }

  validation {
    condition     = alltrue(flatten([for v in values(var.secret_volumes) : [for path, version in v.versions : can(regex("^[A-Za-z0-9._-]+$", path)) && can(regex("^([1-9][0-9]*|latest)$", version))]]))
    error_message = "secret_volumes versions map plain file names to a version number or \"latest\"."
  }
}

variable "publish_topics" {
  description = "Topics this function publishes to: topic name => topic id. Grants roles/pubsub.publisher on each topic only."
  type        = map(string)
  default     = {}
}

variable "bucket_roles" {
  description = "Bucket-scoped roles: key => { bucket, role }."
  type = map(object({
    bucket = string
    role   = string
  }))
  default = {}

  validation {
    condition     = alltrue([for b in values(var.bucket_roles) : contains(["roles/storage.objectViewer", "roles/storage.objectCreator", "roles/storage.objectUser"], b.role)])
    error_message = "Bucket roles are limited to objectViewer, objectCreator and objectUser."
  }
}

variable "project_roles" {
  description = "Project-level roles for services that only grant there (Firestore, Cloud SQL), ideally narrowed by an IAM condition: key => { role, condition }."
  type = map(object({
    role = string
    condition = optional(object({
      title      = string
      expression = string
    }))
  }))
  default = {}

  validation {
    condition     = alltrue([for r in values(var.project_roles) : !contains(["roles/owner", "roles/editor", "roles/viewer"], r.role)])
    error_message = "Primitive roles (owner, editor, viewer) are never granted to a function."
  }

  validation {
    condition     = alltrue([for r in values(var.project_roles) : !can(regex("(?i)admin", r.role))])
    error_message = "Admin roles are never granted to a function."
  }
}

variable "sign_blob_self" {
  description = "Grant the function Token Creator on its own service account (V4 signed URLs via IAM signBlob)."
  type        = bool
  default     = false
}
