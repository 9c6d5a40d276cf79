#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:${PGPORT:-5432} with user postgres / password postgres.
# Installs Debian's package when it is missing (as root), starts the cluster, sets the password. Idempotent.
set -euo pipefail
PGPORT="${PGPORT:-5432}"
url="postgresql://postgres:postgres@127.0.0.1:${PGPORT}/postgres"

if PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "postgres: up on 127.0.0.1:${PGPORT}"; exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  echo "postgres: installing Debian's postgresql package ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^${ver} main$"; then
  pg_createcluster "$ver" main --port "$PGPORT" >/dev/null
fi
conf="/etc/postgresql/${ver}/main/postgresql.conf"
# Tests open many connections (four services, each with a pool); fsync off is for this disposable test cluster only.
grep -q '^max_connections = 300' "$conf" || {
  sed -i 's/^#\?max_connections.*/max_connections = 300/' "$conf"
  printf "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" >> "$conf"
}
pg_ctlcluster "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main restart
for _ in $(seq 1 30); do
  su postgres -c "psql -p ${PGPORT} -Atqc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.5
done
su postgres -c "psql -p ${PGPORT} -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
PGPASSWORD=postgres psql "$url" -Atqc 'select 1' >/dev/null
echo "postgres: up on 127.0.0.1:${PGPORT} (cluster ${ver}/main)"
