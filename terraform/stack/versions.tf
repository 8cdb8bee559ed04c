terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    # 7.21 is the first release with Direct VPC egress on google_cloudfunctions2_function
    # (service_config.direct_vpc_network_interface / direct_vpc_egress).
    google = {
      source  = "hashicorp/google"
      version = ">= 7.21, < 8.0"
    }
    # archive_file zips package.json, package-lock.json and dist/ at plan time (output_sha256: 2.4+).
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}
