variable "project_id" {
  description = "Project of the network."
  type        = string
}

variable "region" {
  description = "Region of the functions subnet."
  type        = string
}

variable "name" {
  description = "VPC name."
  type        = string
  default     = "ldr"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", var.name))
    error_message = "Network names are lower-case letters, digits and hyphens, at most 42 characters."
  }
}

variable "functions_cidr" {
  description = "Subnet of the Direct VPC egress interfaces (functions using Cloud SQL, the migration job). Cloud Run recommends /26 or larger; about two addresses per instance."
  type        = string
  default     = "10.8.0.0/22"

  validation {
    condition     = can(cidrhost(var.functions_cidr, 0)) && tonumber(split("/", var.functions_cidr)[1]) <= 26
    error_message = "functions_cidr must be a valid range of /26 or larger."
  }
}

variable "private_services_prefix_length" {
  description = "Size of the private services access range (Cloud SQL private IPs)."
  type        = number
  default     = 20

  validation {
    condition     = var.private_services_prefix_length >= 16 && var.private_services_prefix_length <= 24
    error_message = "private_services_prefix_length must be between 16 and 24."
  }
}
