output "name" {
  description = "Bucket name."
  value       = google_storage_bucket.main.name
}

output "url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.main.url
}

output "env_vars" {
  description = "Environment for functions that use the artifacts bucket."
  value = {
    ARTIFACTS_BUCKET        = google_storage_bucket.main.name
    ARTIFACTS_UPLOAD_PREFIX = coalesce(var.finalize_notification.object_name_prefix, "")
  }
}
