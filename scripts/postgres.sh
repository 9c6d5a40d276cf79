#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:${PGPORT:-5432} with user postgres / password postgres.
# Installs Debian's package when it is missing (as root), starts the cluster, sets the password. Idempotent.
# The local cluster is tuned for disposable test data (many connections, no fsync, no TLS on loopback): this script
# is for development and CI machines, never for a server holding real data.
set -euo pipefail
PGPORT="${PGPORT:-5432}"
url="postgresql://postgres:postgres@127.0.0.1:${PGPORT}/postgres"
answers() { PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql "$url" -Atqc 'select 1' >/dev/null 2>&1; }

if [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  if answers; then echo "postgres: up on 127.0.0.1:${PGPORT} (not a local Debian cluster)"; exit 0; fi
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
restart=no reload=no
if ! grep -q '^max_connections = 300' "$conf"; then
  sed -i 's/^#\?max_connections.*/max_connections = 300/' "$conf"
  printf "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n" >> "$conf"
  restart=yes
fi
if ! grep -q '^ssl = off' "$conf"; then
  sed -i 's/^ssl = on/#ssl = on/' "$conf"
  echo "ssl = off" >> "$conf"
  reload=yes
fi

if ! su postgres -c "psql -p ${PGPORT} -Atqc 'select 1'" >/dev/null 2>&1; then
  pg_ctlcluster "$ver" main start
elif [ "$restart" = yes ]; then
  pg_ctlcluster "$ver" main restart
elif [ "$reload" = yes ]; then
  pg_ctlcluster "$ver" main reload
fi
for _ in $(seq 1 30); do
  su postgres -c "psql -p ${PGPORT} -Atqc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.5
done
answers || su postgres -c "psql -p ${PGPORT} -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
answers
echo "postgres: up on 127.0.0.1:${PGPORT} (cluster ${ver}/main)"
