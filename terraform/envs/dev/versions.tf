terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    # Same major for google and google-beta, so a beta resource added later cannot pull in a
    # different provider generation. 7.21+: Direct VPC egress on Cloud Functions (gen2).
    google = {
      source  = "hashicorp/google"
      version = ">= 7.21, < 8.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 7.21, < 8.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }

  # Partial configuration: bucket and prefix come from backend.hcl
  #   terraform init -backend-config=backend.hcl
  # (copy backend.hcl.example). The state bucket is created once, by hand (docs/terraform.md).
  backend "gcs" {}
}
