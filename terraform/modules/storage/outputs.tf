output "name" {
  description = "Bucket name."
  value       = google_storage_bucket.main.name
}

output "url" {
  description = "gs:// URL of the bucket."
  value       = google_storage_bucket.main.url
}

output "env_vars" {
  description = "Environment read by shared/config.ts, for functions that use the artifacts bucket."
  value = {
    LFS_BUCKET = google_storage_bucket.main.name
  }
}
