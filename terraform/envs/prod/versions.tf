terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
  }

  # Partial configuration: bucket and prefix come from backend.hcl
  #   terraform init -backend-config=backend.hcl
  # (copy backend.hcl.example). The state bucket is created once, by hand (docs/terraform.md).
  backend "gcs" {}
}
