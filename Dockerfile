# Build stage: compile the single binary with the pinned Bun from the locked dependencies.
FROM oven/bun:1.4.5 AS build
WORKDIR /src
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile
COPY . .
RUN bun run build

# Runtime stage: a slim image with just the binary, run as a non-root user, the audit DB on a volume.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data agent-attr \
 && mkdir -p /data && chown agent-attr /data
COPY --from=build /src/dist/agent-attr /usr/local/bin/agent-attr
USER agent-attr
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
ENV AGENT_ATTR_LOG_DB=/data/audit.db
# Listening beyond loopback requires AGENT_ATTR_ADMIN_TOKEN (the audit API is on the same port).
ENTRYPOINT ["agent-attr"]
CMD ["proxy", "start", "--host", "0.0.0.0", "--port", "8080"]
