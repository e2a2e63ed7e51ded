#!/bin/sh
# First start: initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD (scram), create
# POSTGRES_DB, listen on every address; then run the server as the postgres user.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres "$PGDATA" /var/run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  setpriv --reuid=postgres --regid=postgres --init-groups \
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  setpriv --reuid=postgres --regid=postgres --init-groups pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$db" != "postgres" ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups createdb --username="$user" "$db"
  fi
  setpriv --reuid=postgres --regid=postgres --init-groups pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "initialised $PGDATA: user $user, database $db"
fi
if [ "$1" = "postgres" ]; then
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
