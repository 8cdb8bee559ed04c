output "id" {
  description = "Full subscription id (`projects/<p>/subscriptions/<name>`)."
  value       = google_pubsub_subscription.main.id
}

output "name" {
  description = "Subscription name."
  value       = google_pubsub_subscription.main.name
}

output "delivery" {
  description = "`push` or `pull`."
  value       = var.push == null ? "pull" : "push"
}
