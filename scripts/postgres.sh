#!/usr/bin/env bash
# Start a local PostgreSQL server from Debian's packages for the case store's PostgreSQL tests,
# installing it first when missing, and print the URL the tests read from LESIONLENS_TEST_POSTGRES:
#   export LESIONLENS_TEST_POSTGRES=$(scripts/postgres.sh)
# The role it creates may create databases: each test gets a fresh one and drops it afterwards.
set -euo pipefail
sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "installing Debian's postgresql for the case-store tests (about a minute)" >&2
  $sudo_ apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql >/dev/null
fi
cluster=$(pg_lsclusters --no-header | head -1)
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  $sudo_ pg_createcluster "$version" main >&2
  cluster=$(pg_lsclusters --no-header | head -1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
  $sudo_ pg_ctlcluster "$version" "$name" start >&2
fi
password=lesionlens-test
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
as_postgres "psql -q -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname='lesionlens'\" | grep -q 1 || \
  psql -q -p $port -c \"CREATE ROLE lesionlens LOGIN CREATEDB PASSWORD '$password'\"" >&2
echo "postgresql+psycopg://lesionlens:$password@127.0.0.1:$port/postgres"
