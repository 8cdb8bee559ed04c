variable "project_id" {
  description = "Project of the load balancer."
  type        = string
}

variable "region" {
  description = "Region of the partnerRoom function (serverless NEG)."
  type        = string
}

variable "name" {
  description = "Name prefix of the load-balancer resources."
  type        = string
  default     = "ldr-partners"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", var.name))
    error_message = "name must be lower-case letters, digits and hyphens (at most 42)."
  }
}

variable "room_service_name" {
  description = "Cloud Run service name of the partnerRoom function."
  type        = string
}

variable "hosts" {
  description = "partner slug => custom domain."
  type        = map(string)

  validation {
    condition     = length(distinct(values(var.hosts))) == length(var.hosts)
    error_message = "Two partners cannot share a domain."
  }
}
