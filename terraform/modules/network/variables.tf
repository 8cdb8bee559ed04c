variable "project_id" {
  description = "Project of the network."
  type        = string
}

variable "region" {
  description = "Region of the connector subnet."
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

variable "connector_cidr" {
  description = "A /28 for the Serverless VPC Access connector subnet."
  type        = string
  default     = "10.8.0.0/28"

  validation {
    condition     = can(cidrhost(var.connector_cidr, 0)) && endswith(var.connector_cidr, "/28")
    error_message = "connector_cidr must be a valid /28 range."
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

variable "connector" {
  description = "Serverless VPC Access connector sizing."
  type = object({
    name          = optional(string, "ldr-functions")
    machine_type  = optional(string, "e2-micro")
    min_instances = optional(number, 2)
    max_instances = optional(number, 3)
  })
  default  = {}
  nullable = false

  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{0,23}[a-z0-9]$", var.connector.name))
    error_message = "Connector names are at most 25 lower-case letters, digits and hyphens."
  }

  validation {
    condition     = var.connector.min_instances >= 2 && var.connector.min_instances < var.connector.max_instances && var.connector.max_instances <= 10
    error_message = "Connector needs 2 <= min_instances < max_instances <= 10."
  }
}
