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
  description = "Environment for functions that use Cloud SQL through @google-cloud/cloud-sql-connector (PGUSER is per function)."
  value = {
    CLOUD_SQL_CONNECTION_NAME = google_sql_database_instance.main.connection_name
    CLOUD_SQL_IP_TYPE         = "PRIVATE"
    CLOUD_SQL_AUTH_TYPE       = "IAM"
    PGDATABASE                = google_sql_database.app.name
  }
}
