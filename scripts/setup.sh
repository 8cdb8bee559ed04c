#!/usr/bin/env bash
# Installs what a fresh machine of this project's kind lacks; safe to run again (does nothing then).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite drives for real: redis-server (behind the Upstash REST endpoint) and
# chromium (browser tests through playwright-core; no browser download).
apt_missing=()
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || apt_missing+=(chromium)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "[setup] installing ${apt_missing[*]} from Debian"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

missing=()
command -v java >/dev/null 2>&1 || missing+=("Java 17+ (java on PATH)")
command -v gcloud >/dev/null 2>&1 || [ -n "${LDR_GCLOUD_SDK:-}" ] || missing+=("the Google Cloud SDK with the pubsub and firestore emulators")
if ! command -v pg_config >/dev/null 2>&1 && [ -z "${LDR_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=("PostgreSQL 15 server binaries (initdb, postgres)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  printf '[setup] missing: %s\n' "${missing[@]}" >&2
  exit 1
fi
