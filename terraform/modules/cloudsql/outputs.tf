output "connection_name" {
  description = "Instance connection name (`project:region:instance`) for the Cloud SQL connectors."
  value       = google_sql_database_instance.main.connection_name
}

output "instance_name" {
  description = "Instance name."
  value       = google_sql_database_instance.main.name
}

output "private_ip" {
  description = "Private IP address of the instance."
  value       = google_sql_database_instance.main.private_ip_address
}

output "iam_users" {
  description = "key => PostgreSQL user name of the IAM database user (use as PGUSER)."
  value       = { for k, u in google_sql_user.iam : k => u.name }
}

output "admin_users" {
  description = "key => PostgreSQL user name of the admin IAM database users (cloudsqlsuperuser)."
  value       = { for k, u in google_sql_user.admin : k => u.name }
}

output "database" {
  description = "Application database name."
  value       = google_sql_database.app.name
}
