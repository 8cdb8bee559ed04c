output "name" {
  description = "Database id."
  value       = google_firestore_database.main.name
}

output "id" {
  description = "Full database resource id."
  value       = google_firestore_database.main.id
}
