# ---- what each function uses (least privilege, reviewed here in one table) ---------------
# Topic publishing is not listed: it is derived from the topology (`publishedBy`), plus the
# dead-letter topic for Pub/Sub-triggered functions (poison messages). cloudsql, redis,
# partner_hmac and bucket_roles must agree with the function's `env` list in the topology
# (checks.tf): a function that reads CLOUD_SQL_INSTANCE is the one that gets Cloud SQL access.
#
#   firestore    project role on the Firestore database (conditioned on that database)
#   cloudsql     IAM database user + cloudsql.client/instanceUser on the instance + Direct VPC egress
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
  # HTTPS: the code answers within 30 s (its own request timeout); Cloud Run's 60 s is a backstop.
  # Pub/Sub: 60 s; the push ack deadline (pubsub.tf, 600 s) stays above every timeout, so a slow
  # run is never delivered a second time while it is still running (checked in checks.tf).
  function_runtime_defaults = {
    https  = { memory = "512Mi", cpu = "1", timeout_seconds = 60, min_instances = 0, max_instances = 50, concurrency = 80 }
    pubsub = { memory = "512Mi", cpu = "1", timeout_seconds = 60, min_instances = 0, max_instances = 50, concurrency = 40 }
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

  # partnerRoom's absolute links (JSON schema URLs): its own cloudfunctions.net URL, which is
  # known before the function exists (the Cloud Run uri output would be a cycle), unless the
  # environment serves it elsewhere.
  public_base_url = coalesce(var.public_base_url, "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.function_ids["partnerRoom"]}")

  # ---- environment: each function's `env` list in shared/topology.json ----------------------
  # The topology lists, per function, every variable its code reads (one source for Terraform,
  # the config code and the production boot test). Values come from this one map; a listed name
  # whose value is null is not set, so the code's default applies (runtime_settings left unset:
  # tostring(null) is null). checks.tf fails the plan when
  # a function lists a name this map does not know.
  env_values = {
    GOOGLE_CLOUD_PROJECT         = var.project_id
    LOG_LEVEL                    = var.log_level
    JWKS_URL                     = var.identity.jwks_url
    JWT_ISSUER                   = var.identity.issuer
    JWT_AUDIENCE                 = var.identity.audience
    UPSTASH_REDIS_REST_URL       = var.upstash_redis_rest_url
    CLOUD_SQL_INSTANCE           = module.cloudsql.connection_name
    PGDATABASE                   = module.cloudsql.database
    PG_STATEMENT_TIMEOUT_MS      = tostring(var.runtime_settings.pg_statement_timeout_ms)
    LFS_BUCKET                   = module.storage.name
    LFS_SIGNER                   = "iam"
    LFS_MAX_BYTES                = tostring(var.runtime_settings.lfs_max_bytes)
    LFS_CONTENT_TYPES            = try(join(",", var.runtime_settings.lfs_content_types), null)
    LFS_URL_TTL_SECONDS          = tostring(var.runtime_settings.lfs_url_ttl_seconds)
    LFS_RESUMABLE_FROM_BYTES     = tostring(var.runtime_settings.lfs_resumable_from_bytes)
    RATE_STUDENT_PER_MIN         = tostring(var.runtime_settings.rate_student_per_min)
    RATE_STUDENT_EVENTS_PER_MIN  = tostring(var.runtime_settings.rate_student_events_per_min)
    RATE_INSTANCE_EVENTS_PER_MIN = tostring(var.runtime_settings.rate_instance_events_per_min)
    DEDUP_TTL_SECONDS            = tostring(var.runtime_settings.dedup_ttl_seconds)
    PARTNER_SECRETS_DIR          = local.partner_secrets_dir
    CORS_ORIGINS                 = join(",", var.cors_origins)
    PUBLIC_BASE_URL              = local.public_base_url

    # Never set in production:
    DATABASE_URL                   = null # local suite only; production uses the Cloud SQL connector
    GOOGLE_APPLICATION_CREDENTIALS = null # lfsProxy signs through IAM signBlob; a key file is refused
    LFS_SIGNING_ENDPOINT           = null # the default IAM Credentials endpoint
    TRIAGE_RULES_FILE              = null # the rules shipped in the artifact
  }

  # Values that differ per function.
  function_env_values = {
    for name, f in local.functions : name => merge(local.env_values, {
      PGUSER = trimsuffix(local.function_sa_emails[name], ".gserviceaccount.com")
    })
  }

  # Names whose value is a Secret Manager secret (secret_environment_variables), never plain.
  secret_env_values = {
    UPSTASH_REDIS_REST_TOKEN = module.secrets.ids[local.upstash_secret]
  }

  function_env = {
    for name, f in local.functions : name => {
      for k in f.env : k => local.function_env_values[name][k]
      if !contains(keys(local.secret_env_values), k) && try(local.function_env_values[name][k], null) != null
    }
  }

  function_secret_env = {
    for name, f in local.functions : name => {
      for k in f.env : k => { secret = local.secret_env_values[k] } if contains(keys(local.secret_env_values), k)
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

  # Who may invoke a function besides the public: the Pub/Sub push identity (event functions)
  # and the scheduler identity (functions with a topology schedule).
  scheduled_functions = toset([for s in try(local.topology.schedules, []) : s.function])
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
  # event functions are invokable only by the Pub/Sub push identity (and the scheduler where a
  # topology schedule targets them).
  public = each.value.trigger == "https" && try(each.value.public, false)
  invokers = merge(
    { for k, m in { pubsub-push = google_service_account.pubsub_push.member } : k => m if each.value.trigger == "pubsub" },
    { for k, m in { scheduler = google_service_account.scheduler.member } : k => m if contains(local.scheduled_functions, each.key) },
  )

  source_object = {
    bucket = google_storage_bucket_object.functions_source.bucket
    object = google_storage_bucket_object.functions_source.name
  }
  build = {
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id
  }

  runtime_config = merge(local.function_runtime[each.key], {
    ingress = each.value.trigger == "https" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
  })
  vpc = local.function_access[each.key].cloudsql ? { network = module.network.network_id, subnetwork = module.network.functions_subnet_id } : null

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
    google_storage_bucket_iam_member.build_sources,
  ]
}

# ---- the build artifact: package.json, package-lock.json and dist/ -------------------------
# `npm run build` writes dist/ (dist/index.js is `main`; FUNCTION_TARGET, set from the entry
# point, selects one function). The zip is made at plan time, so its hash is known to the plan;
# the object is named by it, so a new build is a new object (every function redeploys) and an
# unchanged build changes nothing.

locals {
  repo_root    = abspath("${path.module}/../..")
  source_files = setunion(["package.json", "package-lock.json"], fileset(local.repo_root, "dist/**"))
}

data "archive_file" "functions" {
  type        = "zip"
  output_path = "${path.root}/.terraform/ldr-functions.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }

  lifecycle {
    precondition {
      condition     = fileexists("${local.repo_root}/dist/index.js")
      error_message = "dist/index.js is missing: run `npm ci && npm run build` in the repository root before plan (docs/production.md)."
    }
  }
}

resource "google_storage_bucket_object" "functions_source" {
  bucket       = google_storage_bucket.sources.name
  name         = "functions/${data.archive_file.functions.output_sha256}.zip"
  source       = data.archive_file.functions.output_path
  content_type = "application/zip"
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

# The build reads (and Cloud Functions stages) the source archive: Storage Object Admin on our
# source bucket only.
resource "google_storage_bucket_iam_member" "build_sources" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.build.member
}

resource "google_project_iam_member" "build" {
  for_each = {
    logs = { role = "roles/logging.logWriter", condition = null }
    # The gcf-v2-sources-* bucket Cloud Functions copies the archive to before the build.
    staging = {
      role = "roles/storage.objectAdmin"
      condition = {
        title      = "gcf-v2-sources"
        expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
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
