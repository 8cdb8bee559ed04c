output "name" {
  description = "Function (and Cloud Run service) name."
  value       = google_cloudfunctions2_function.main.name
}

output "uri" {
  description = "HTTPS URL of the function."
  value       = google_cloudfunctions2_function.main.service_config[0].uri
}

output "service_account_email" {
  description = "Email of the function's own runtime service account."
  value       = google_service_account.runtime.email
}

output "service_account_member" {
  description = "IAM member string of the runtime service account."
  value       = google_service_account.runtime.member
}
