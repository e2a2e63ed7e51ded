#!/usr/bin/env bash
# Builds the local base images the compose test (scripts/compose-test.ts) runs on, for a machine
# that reaches Debian's packages and the npm registry but no Docker Hub:
#   agent-attr-test/debian:bookworm   debootstrap --variant=minbase bookworm, imported
#   agent-attr-test/bun:1.4.5         that + the host's Bun, from the npm package (stands in for
#                                     oven/bun), trusting the host's CA bundle
#   agent-attr-test/postgres:15       that + Debian's postgresql-15 (stands in for postgres:15)
#   agent-attr-test/redis:7           that + Debian's redis-server (stands in for redis:7)
# An image already present is kept (--rebuild builds them all again). Needs root, debootstrap and
# a running Docker daemon; the builds use the host's network (--network host), so the daemon
# needs no NAT. See docs/development.md "The compose test".
set -euo pipefail
cd "$(dirname "$0")/.."

rebuild=0
[ "${1:-}" = "--rebuild" ] && rebuild=1
BUN_VERSION="$(sed -n 's/.*"packageManager": "bun@\([0-9.]*\)".*/\1/p' package.json)"
export DOCKER_BUILDKIT=0 # the classic builder: the daemon may be older than the CLI's buildx

have() { [ "$rebuild" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

if ! have agent-attr-test/debian:bookworm; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  echo "--- debootstrap bookworm (minbase) into $root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - agent-attr-test/debian:bookworm >/dev/null
fi

build() { # tag folder [args...]
  local tag="$1" dir="$2"
  shift 2
  if ! have "$tag"; then
    echo "--- docker build $tag"
    docker build --quiet --network host -t "$tag" "$@" "$dir" >/dev/null
  fi
}
if ! have "agent-attr-test/bun:$BUN_VERSION"; then
  bun_bin="$(command -v bun || true)"
  if [ -z "$bun_bin" ] || [ "$(bun --version)" != "$BUN_VERSION" ]; then
    echo "the host needs bun $BUN_VERSION (npm install -g bun@$BUN_VERSION) to build agent-attr-test/bun" >&2
    exit 1
  fi
  context="$(mktemp -d)"
  cp test/docker/bun/Dockerfile "$context/"
  cp "$(readlink -f "$bun_bin")" "$context/bun"
  cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
  build "agent-attr-test/bun:$BUN_VERSION" "$context"
  rm -rf "$context"
fi
build agent-attr-test/postgres:15 test/docker/postgres
build agent-attr-test/redis:7 test/docker/redis
docker image ls --filter reference='agent-attr-test/*'
