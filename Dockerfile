# The base images, as build args so a machine without Docker Hub can build from local images
# (scripts/docker-test-images.sh); the defaults are the official ones.
ARG BUN_IMAGE=oven/bun:1.4.5
ARG RUNTIME_IMAGE=debian:bookworm-slim

# Build stage: compile the single binary with the pinned Bun from the locked dependencies.
FROM ${BUN_IMAGE} AS build
WORKDIR /src
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile
COPY . .
# The build context has no .git: pass the commit for `agent-attr --version`
# (docker build --build-arg AGENT_ATTR_BUILD_COMMIT="$(git rev-parse --short=12 HEAD)" .).
ARG AGENT_ATTR_BUILD_COMMIT=unknown
RUN bun run build

# Runtime stage: a slim image with just the binary, run as a non-root user (uid 10001).
#   /data   the audit database, its WAL, intent log and hash key (personal data): a volume
#   /keys   the Ed25519 signing key, on its own volume, apart from the database it vouches for
#   /config where to mount a config: -e AGENT_ATTR_CONFIG=/config/agent-attr.config.ts
# A bind-mounted /data must be writable by uid 10001 (or run with --user "$(id -u):$(id -g)");
# the proxy refuses to start otherwise, saying so. See docs/operators.md "Docker".
FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data agent-attr \
 && mkdir -p /data /keys /config \
 && chown agent-attr /data /keys \
 && chmod 0700 /keys
COPY --from=build /src/dist/agent-attr /usr/local/bin/agent-attr
USER agent-attr
WORKDIR /data
VOLUME ["/data", "/keys"]
# PORT and HOST as platforms set them (flags and these win over the config's server.port/host).
# Listening beyond loopback requires AGENT_ATTR_ADMIN_TOKEN (the audit API is on the same port).
ENV AGENT_ATTR_LOG_DB=/data/audit.db \
    AGENT_ATTR_SIGNING_KEY=/keys/audit.signing-key \
    HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080
# The image has no curl: the binary asks its own /healthz (exit 0 healthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["agent-attr", "health"]
# SIGTERM drains: in-flight calls get server.shutdownGraceMs (30 s), then records are flushed.
# Docker's default stop timeout is 10 s: run with --stop-timeout 45 (compose: stop_grace_period: 45s;
# Kubernetes: terminationGracePeriodSeconds: 45), longer than shutdownGraceMs.
STOPSIGNAL SIGTERM
ENTRYPOINT ["agent-attr"]
CMD ["proxy", "start"]
