# ---- what each function uses (least privilege, reviewed here in one table) ---------------
# Derived from the runtime clients each functions/<name>/index.ts uses (a test cross-checks it):
# rt.pg() -> cloudsql; rt.redis() or rt.verifier() (JWT revocation list) -> redis. Topic
# publishing is not listed: it is derived from the topology (`publishedBy`), plus the
# dead-letter topic for Pub/Sub-triggered functions (poison messages).
#
#   firestore    project role on the Firestore database (conditioned on that database)
#   cloudsql     IAM database user + cloudsql.client/instanceUser on the instance + VPC connector
#   redis        the Upstash token secret (rate limits, dedup windows, mirror marks, jti deny-list)
#   bucket_roles roles on the artifacts bucket only
#   partner_hmac the partners' HMAC keys, mounted as files (learnerRef pseudonymisation)
#   sign_blob    Token Creator on its own service account (V4 signed URLs through signBlob)
locals {
  function_access = {
    ingestInteraction = { firestore = "roles/datastore.viewer", cloudsql = false, redis = true, bucket_roles = [], partner_hmac = false, sign_blob = false }
    routeTriage       = { firestore = null, cloudsql = false, redis = false, bucket_roles = [], partner_hmac = false, sign_blob = false }
    updateProgress    = { firestore = "roles/datastore.user", cloudsql = true, redis = false, bucket_roles = [], partner_hmac = false, sign_blob = false }
    mirrorToPartners  = { firestore = "roles/datastore.viewer", cloudsql = false, redis = true, bucket_roles = [], partner_hmac = true, sign_blob = false }
    lfsProxy          = { firestore = "roles/datastore.user", cloudsql = false, redis = true, bucket_roles = ["roles/storage.objectCreator", "roles/storage.objectViewer"], partner_hmac = false, sign_blob = true }
    finalizeArtifact  = { firestore = "roles/datastore.user", cloudsql = false, redis = false, bucket_roles = ["roles/storage.objectUser"], partner_hmac = false, sign_blob = false }
    publishContent    = { firestore = "roles/datastore.user", cloudsql = true, redis = true, bucket_roles = [], partner_hmac = false, sign_blob = false }
    partnerRoom       = { firestore = "roles/datastore.viewer", cloudsql = false, redis = true, bucket_roles = [], partner_hmac = false, sign_blob = false }
    progressApi       = { firestore = "roles/datastore.viewer", cloudsql = true, redis = true, bucket_roles = [], partner_hmac = false, sign_blob = false }
  }

  # Sizing: trigger defaults, then per-function profile, then the environment's overrides.
  function_runtime_defaults = {
    https  = { memory = "512Mi", cpu = "1", timeout_seconds = 60, min_instances = 0, max_instances = 50, concurrency = 80 }
    pubsub = { memory = "512Mi", cpu = "1", timeout_seconds = 120, min_instances = 0, max_instances = 50, concurrency = 40 }
  }
  function_profiles = {
    # Streams up to 5 GiB through SHA-256: long timeout, more memory, few requests per instance.
    finalizeArtifact = { memory = "1Gi", timeout_seconds = 540, concurrency = 4 }
  }
  function_runtime = {
    for name, f in local.functions : name => {
      for k, v in local.function_runtime_defaults[f.trigger] : k => coalesce(
        try(var.functions[name][k], null),
        try(local.function_profiles[name][k], null),
        try(var.function_defaults[f.trigger][k], null),
        v,
      )
    }
  }

  upstash_secret      = "upstash-redis-rest-token"
  partner_hmac_secret = "partner-hmac"
  # PARTNER_SECRETS_DIR: shared/partner-secrets.ts reads the file <dir>/<slug> for each partner.
  partner_secrets_dir = "/secrets/partners"

  firestore_condition = {
    title      = "firestore-${module.firestore.name}"
    expression = "resource.name == \"projects/${var.project_id}/databases/${module.firestore.name}\""
  }
  cloudsql_condition = {
    title      = "cloudsql-${module.cloudsql.instance_name}"
    expression = "resource.name == \"projects/${var.project_id}/instances/${module.cloudsql.instance_name}\" && resource.type == \"sqladmin.googleapis.com/Instance\""
  }

  # ---- environment: only names the code reads (shared/config.ts; LOG_LEVEL: shared/log.ts) ----
  # A test checks every name below against the zod schema in shared/config.ts.
  #
  # shared/config.ts validates UPSTASH_*, JWKS_URL, JWT_ISSUER, JWT_AUDIENCE and
  # (DATABASE_URL or CLOUD_SQL_INSTANCE + PGUSER) at every cold start, whatever the function
  # uses, so every function gets them. Access still follows function_access: the Upstash token
  # is the real secret only where `redis`, and Cloud SQL roles and the VPC connector only where
  # `cloudsql`.
  env_common = {
    GOOGLE_CLOUD_PROJECT   = var.project_id
    UPSTASH_REDIS_REST_URL = var.upstash_redis_rest_url
    JWKS_URL               = var.identity.jwks_url
    JWT_ISSUER             = var.identity.issuer
    JWT_AUDIENCE           = var.identity.audience
    LOG_LEVEL              = var.log_level
  }

  # Not a credential: satisfies the config schema in functions that never open Redis (they have
  # no access to the token secret; a Redis call from them would be refused by Upstash).
  upstash_token_placeholder = "unused-no-redis-access"

  # Optional settings, each only on the functions whose code reads it.
  function_settings = {
    ingestInteraction = ["RATE_STUDENT_PER_MIN", "RATE_INSTANCE_EVENTS_PER_MIN", "DEDUP_TTL_SECONDS"]
    routeTriage       = []
    updateProgress    = []
    mirrorToPartners  = ["PARTNER_SECRETS_DIR"]
    lfsProxy          = ["LFS_MAX_BYTES", "LFS_SIGNER"]
    finalizeArtifact  = []
    publishContent    = []
    partnerRoom       = []
    progressApi       = []
  }
  setting_values = {
    LFS_MAX_BYTES                = tostring(var.runtime_settings.lfs_max_bytes)
    LFS_SIGNER                   = "iam"
    RATE_STUDENT_PER_MIN         = tostring(var.runtime_settings.rate_student_per_min)
    RATE_INSTANCE_EVENTS_PER_MIN = tostring(var.runtime_settings.rate_instance_events_per_min)
    DEDUP_TTL_SECONDS            = tostring(var.runtime_settings.dedup_ttl_seconds)
    PARTNER_SECRETS_DIR          = local.partner_secrets_dir
  }

  function_env = {
    for name, f in local.functions : name => merge(
      local.env_common,
      module.cloudsql.env_vars,
      { PGUSER = trimsuffix(local.function_sa_emails[name], ".gserviceaccount.com") },
      { for k, v in module.storage.env_vars : k => v if length(local.function_access[name].bucket_roles) > 0 },
      { for k in local.function_settings[name] : k => local.setting_values[k] },
      { for k, v in { UPSTASH_REDIS_REST_TOKEN = local.upstash_token_placeholder } : k => v if !local.function_access[name].redis },
    )
  }

  function_secret_env = {
    for name, f in local.functions : name => {
      for k, v in { UPSTASH_REDIS_REST_TOKEN = { secret = module.secrets.ids[local.upstash_secret] } } : k => v if local.function_access[name].redis
    }
  }

  # One volume at PARTNER_SECRETS_DIR: file <slug> = the partner's pinned version of the
  # partner-hmac secret. Only one secret fits a mount path, hence one secret with a version per
  # partner rather than one secret per partner.
  function_secret_volumes = {
    for name, f in local.functions : name => {
      for dir, v in {
        (local.partner_secrets_dir) = {
          secret   = module.secrets.ids[local.partner_hmac_secret]
          versions = { for slug, p in var.partners : slug => tostring(p.hmac_version) if p.hmac_version != null }
        }
      } : dir => v if local.function_access[name].partner_hmac && length(v.versions) > 0
    }
  }
}

# ---- one function per topology entry, each with its own service account -----------------

module "function" {
  source   = "../modules/function"
  for_each = { for f in local.topology.functions : f.name => f }

  project_id      = var.project_id
  region          = var.region
  name            = local.function_ids[each.key]
  entry_point     = each.key
  description     = "Lerning-Data-Room ${each.key} (${each.value.trigger})"
  labels          = local.labels
  trigger         = each.value.trigger
  service_account = { account_id = local.function_sa_ids[each.key] }

  # allUsers only for HTTPS functions the topology marks public (they verify JWTs themselves);
  # event functions are invokable only by the Pub/Sub push identity.
  public   = each.value.trigger == "https" && try(each.value.public, false)
  invokers = { for k, m in { pubsub-push = google_service_account.pubsub_push.member } : k => m if each.value.trigger == "pubsub" }

  source_archive = {
    bucket = google_storage_bucket.sources.name
    path   = var.function_source_archive
  }
  build = {
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
  }

  runtime_config = merge(local.function_runtime[each.key], {
    ingress = each.value.trigger == "https" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
  })
  vpc = local.function_access[each.key].cloudsql ? { connector = module.network.vpc_connector_id, egress = "PRIVATE_RANGES_ONLY" } : null

  env_vars        = local.function_env[each.key]
  secret_env_vars = local.function_secret_env[each.key]
  secret_volumes  = local.function_secret_volumes[each.key]

  publish_topics = {
    for t in local.topology.topics : t.name => module.topic[t.name].id
    if t.publishedBy == each.key || (t.name == local.topology.deadLetterTopic && each.value.trigger == "pubsub")
  }
  bucket_roles = {
    for role in local.function_access[each.key].bucket_roles : role => { bucket = module.storage.name, role = role }
  }
  project_roles = merge(
    { for role in compact([local.function_access[each.key].firestore]) : "firestore" => { role = role, condition = local.firestore_condition } },
    { for role in(local.function_access[each.key].cloudsql ? ["roles/cloudsql.client", "roles/cloudsql.instanceUser"] : []) : role => { role = role, condition = local.cloudsql_condition } },
  )
  sign_blob_self = local.function_access[each.key].sign_blob

  depends_on = [
    google_project_service.main,
    google_artifact_registry_repository_iam_member.build_writer,
    google_project_iam_member.build,
  ]
}

# ---- build: source bucket, image repository, dedicated build identity ---------------------

resource "google_storage_bucket" "sources" {
  project                     = var.project_id
  name                        = "${var.project_id}-ldr-function-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.environment != "prod"
  labels                      = local.labels

  depends_on = [google_project_service.main]
}

resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "ldr-functions"
  format        = "DOCKER"
  description   = "Images built from the function sources."
  labels        = local.labels

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.main]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "fn-build"
  display_name = "Cloud Functions build"
  description  = "Builds the function images (reads sources, writes images and build logs)."

  depends_on = [google_project_service.main]
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

resource "google_project_iam_member" "build" {
  for_each = {
    logs = { role = "roles/logging.logWriter", condition = null }
    # Our source bucket and the gcf-v2-sources-* staging bucket Cloud Functions copies it to.
    sources = {
      role = "roles/storage.objectViewer"
      condition = {
        title      = "function-sources"
        expression = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.sources.name}\") || resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
      }
    }
  }

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.build.member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title      = condition.value.title
      expression = condition.value.expression
    }
  }
}
