variable "project_id" {
  description = "Project of the instance."
  type        = string
}

variable "region" {
  description = "Region of the instance."
  type        = string
}

variable "name" {
  description = "Instance name."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,96}[a-z0-9])?$", var.name))
    error_message = "Instance names are lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "database" {
  description = "Application database name."
  type        = string
  default     = "ldr"
}

variable "private_network" {
  description = "Self link / id of the VPC with private services access (Cloud SQL gets a private IP there)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the instance against deletion (Terraform and API)."
  type        = bool
  default     = true
}

variable "labels" {
  description = "User labels on the instance."
  type        = map(string)
  default     = {}
}

variable "settings" {
  description = "Machine, availability and backup settings."
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

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.settings.availability_type)
    error_message = "availability_type must be ZONAL or REGIONAL."
  }

  validation {
    condition     = var.settings.log_retention_days >= 1 && var.settings.log_retention_days <= 7
    error_message = "Point-in-time recovery keeps transaction logs for 1-7 days (Enterprise edition)."
  }

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):00$", var.settings.backup_start_time))
    error_message = "backup_start_time must be a full hour, HH:00 (UTC)."
  }

  validation {
    condition     = var.settings.retained_backups >= 1 && var.settings.disk_size_gb >= 10
    error_message = "Keep at least one backup and at least 10 GB of disk."
  }
}

variable "iam_service_accounts" {
  description = "key (function name) => service account email that gets an IAM database user."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for e in values(var.iam_service_accounts) : endswith(e, ".gserviceaccount.com")])
    error_message = "IAM database users are created for service accounts (…gserviceaccount.com) only."
  }
}

variable "admin_service_accounts" {
  description = "key => service account email that gets an IAM database user with the cloudsqlsuperuser role (schema migrations and grants)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for e in values(var.admin_service_accounts) : endswith(e, ".gserviceaccount.com")])
    error_message = "Admin IAM database users are created for service accounts (…gserviceaccount.com) only."
  }
}
