#!/usr/bin/env bash
# A Docker daemon for the compose test on a machine without systemd or Docker Hub (Debian's
# docker.io 20.10 and docker-compose 1.29; see docs/development.md "The compose test"):
#   scripts/dockerd.sh start   install docker.io, docker-compose and debootstrap if missing, start
#                              dockerd (data under $AGENT_ATTR_DOCKER_DIR, default
#                              /var/tmp/agent-attr-docker) and wait until it answers
#   scripts/dockerd.sh stop    stop the dockerd this script started (its pid file) and the containerd
#                              it runs, and release the network namespace it leaves mounted
# The daemon changes no iptables rule and no sysctl (--iptables=false, --ip-forward=false): the
# containers of one compose project reach each other on its network, published ports go through
# docker-proxy on the host, and image builds use the host's network (--network host).
set -euo pipefail
dir="${AGENT_ATTR_DOCKER_DIR:-/var/tmp/agent-attr-docker}"
pidfile="$dir/dockerd.pid"

case "${1:-}" in
start)
  if docker info >/dev/null 2>&1; then
    echo "a Docker daemon already answers"
    exit 0
  fi
  missing=""
  command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
  command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
  command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
  if [ -n "$missing" ]; then
    echo "--- apt-get install$missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
  mkdir -p "$dir/data" "$dir/exec"
  echo "--- dockerd (data in $dir, log in $dir/dockerd.log)"
  nohup dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$pidfile" \
    --iptables=false --ip-forward=false --ip-masq=false --storage-driver=overlay2 \
    >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
  done
  echo "dockerd did not answer within 30 s; see $dir/dockerd.log" >&2
  tail -20 "$dir/dockerd.log" >&2
  exit 1
  ;;
stop)
  if [ ! -s "$pidfile" ]; then
    echo "no dockerd started by this script ($pidfile)"
    exit 0
  fi
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    if ! kill -0 "$pid" 2>/dev/null; then
      # dockerd leaves its default network namespace mounted under its exec root: release it.
      while mountpoint -q "$dir/exec/netns/default" 2>/dev/null; do umount "$dir/exec/netns/default" || break; done
      rm -f "$pidfile"
      exit 0
    fi
    sleep 0.5
  done
  echo "dockerd ($pid) still runs after 30 s" >&2
  exit 1
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
