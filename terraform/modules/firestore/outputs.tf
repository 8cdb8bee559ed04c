output "name" {
  description = "Database id."
  value       = google_firestore_database.main.name
}

output "id" {
  description = "Full database resource id."
  value       = google_firestore_database.main.id
}

output "env_vars" {
  description = "Environment for functions that use Firestore."
  value = {
    FIRESTORE_DATABASE_ID = google_firestore_database.main.name
  }
}
