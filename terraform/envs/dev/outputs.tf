output "function_urls" {
  description = "Function name => HTTPS URL."
  value       = module.stack.function_urls
}

output "function_service_accounts" {
  description = "Function name => runtime service account."
  value       = module.stack.function_service_accounts
}

output "subscriptions" {
  description = "Subscription name => push or pull."
  value       = module.stack.subscriptions
}

output "artifacts_bucket" {
  description = "Artifacts bucket."
  value       = module.stack.artifacts_bucket
}

output "cloudsql_connection_name" {
  description = "Cloud SQL instance connection name."
  value       = module.stack.cloudsql_connection_name
}

output "cloudsql_iam_users" {
  description = "PostgreSQL IAM users to grant table privileges to."
  value       = module.stack.cloudsql_iam_users
}

output "secrets_to_fill" {
  description = "Secrets that need a version (gcloud secrets versions add)."
  value       = module.stack.secrets_to_fill
}

output "partner_gateway_ip" {
  description = "IP for the partner custom domains' DNS records."
  value       = module.stack.partner_gateway_ip
}
