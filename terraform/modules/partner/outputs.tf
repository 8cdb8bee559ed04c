output "topic_id" {
  description = "Id of partner.<slug>.events."
  value       = module.topic.id
}

output "subscription_id" {
  description = "Id of partner.<slug>.pull."
  value       = module.subscription.id
}

output "subscription_name" {
  description = "Name of partner.<slug>.pull."
  value       = module.subscription.name
}

output "record" {
  description = "Firestore document path of the partner record."
  value       = "partners/${google_firestore_document.main.document_id}"
}

output "domain" {
  description = "Custom domain (null when none)."
  value       = var.domain
}
