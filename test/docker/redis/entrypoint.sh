#!/bin/sh
# As the official image: flags alone mean redis-server, which runs as the redis user in /data with
# protected mode off (the network is the compose project's own).
set -eu
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = "redis-server" ]; then
  chown -R redis:redis /data
  exec setpriv --reuid=redis --regid=redis --init-groups "$@" --protected-mode no
fi
exec "$@"
