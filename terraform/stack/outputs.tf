output "function_urls" {
  description = "Topology function name => HTTPS URL."
  value       = { for name, f in module.function : name => f.uri }
}

output "function_service_accounts" {
  description = "Topology function name => its own runtime service account email."
  value       = { for name, f in module.function : name => f.service_account_email }
}

output "topics" {
  description = "Topic name => id."
  value       = { for name, t in module.topic : name => t.id }
}

output "subscriptions" {
  description = "Subscription name => push or pull."
  value = merge(
    { for name, s in module.subscription : name => s.delivery },
    { for id, s in module.instance_subscription : s.name => s.delivery },
    { for slug, p in module.partner : p.subscription_name => "pull" },
  )
}

output "artifacts_bucket" {
  description = "Artifacts bucket name."
  value       = module.storage.name
}

output "function_source_bucket" {
  description = "Bucket the source archives are uploaded to."
  value       = google_storage_bucket.sources.name
}

output "cloudsql_connection_name" {
  description = "Cloud SQL instance connection name."
  value       = module.cloudsql.connection_name
}

output "cloudsql_iam_users" {
  description = "Function => PostgreSQL IAM user (grant table privileges to these in the migration)."
  value       = module.cloudsql.iam_users
}

output "secrets_to_fill" {
  description = "Secret ids that need a version added (gcloud secrets versions add …)."
  value       = keys(module.secrets.ids)
}

output "partner_gateway_ip" {
  description = "IP the partner custom domains must point to (null when no partner has a domain)."
  value       = try(module.partner_gateway[0].ip_address, null)
}

output "pubsub_push_service_account" {
  description = "Identity of the fn.* push subscriptions."
  value       = google_service_account.pubsub_push.email
}

output "migrate_job" {
  description = "Cloud Run job that applies the migrations and grants: gcloud run jobs execute <name> --region <region> --wait."
  value       = google_cloud_run_v2_job.migrate.name
}

output "function_source_object" {
  description = "gs:// path of the deployed build artifact (named by its SHA-256)."
  value       = "gs://${google_storage_bucket_object.functions_source.bucket}/${google_storage_bucket_object.functions_source.name}"
}

output "schedules" {
  description = "Cloud Scheduler jobs of the topology schedules."
  value       = { for k, j in google_cloud_scheduler_job.main : k => j.name }
}
