output "id" {
  description = "Full topic id (`projects/<p>/topics/<name>`)."
  value       = google_pubsub_topic.main.id
}

output "name" {
  description = "Topic name."
  value       = google_pubsub_topic.main.name
}

output "ordering_key" {
  description = "Ordering-key field publishers use (null when unordered)."
  value       = var.ordering_key
}

output "schema_id" {
  description = "Schema id when the topic enforces one, else null."
  value       = try(google_pubsub_schema.definition[0].id, null)
}
