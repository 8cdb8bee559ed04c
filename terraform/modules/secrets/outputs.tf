output "ids" {
  description = "secret id => secret id (use as `secret` in the function module's secret_env_vars / secret_volumes; carries the dependency)."
  value       = { for k, s in google_secret_manager_secret.main : k => s.secret_id }
}

output "names" {
  description = "secret id => full resource name (`projects/<number>/secrets/<id>`)."
  value       = { for k, s in google_secret_manager_secret.main : k => s.name }
}
