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

output "env_vars" {
  description = "Environment read by shared/config.ts (createPgPool: Cloud SQL Node connector, private IP, IAM auth). PGUSER is per function."
  value = {
    CLOUD_SQL_INSTANCE = google_sql_database_instance.main.connection_name
    PGDATABASE         = google_sql_database.app.name
  }
}
