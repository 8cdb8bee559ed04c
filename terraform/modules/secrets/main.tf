# Secret containers only. Values are added out of band (`gcloud secrets versions add`), so no
# secret material ever lands in Terraform state. Read access is granted by the function module,
# per function and per secret, for exactly the secrets wired into its environment.
resource "google_secret_manager_secret" "main" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = each.key
  labels    = merge(var.labels, each.value.labels)

  annotations = {
    purpose = each.value.description
  }

  replication {
    user_managed {
      dynamic "replicas" {
        for_each = var.replica_locations
        content {
          location = replicas.value
        }
      }
    }
  }
}
