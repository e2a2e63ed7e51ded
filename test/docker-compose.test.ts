// docker-compose.yml and the compose test's override, read without Docker (CI has no daemon; the
// real run is `bun scripts/compose-test.ts`, docs/development.md "The compose test"): the replicas'
// URLs name the services and credentials the file gives PostgreSQL and Redis, they share one
// signing key volume, the published ports can be moved, the stop grace outlasts the proxy's own,
// and the override only swaps what the real run needs (base images the Dockerfile takes as build
// args, images scripts/docker-test-images.sh builds).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { configSchema } from "../src/config/schema.ts";

const root = resolve(import.meta.dir, "..");
const read = (path: string) => readFileSync(resolve(root, path), "utf8");

interface Service {
  image?: string;
  build?: string | { context: string; args?: Record<string, string> };
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  command?: string[];
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}
const compose = Bun.YAML.parse(read("docker-compose.yml")) as Compose;
const override = Bun.YAML.parse(read("test/docker/compose.test.yml")) as Compose;
const replicas = ["replica-1", "replica-2"].map((name) => compose.services[name]!);

/** `${NAME:-default}` as docker-compose substitutes it with NAME unset (or set, from `env`). */
function substitute(text: string, env: Record<string, string> = {}): string {
  return text.replace(/\$\{(\w+):-([^}]*)\}/g, (_, name: string, fallback: string) => env[name] ?? fallback);
}

describe("docker-compose.yml", () => {
  test("the replicas' trail URL is the PostgreSQL service with the user, password and database it is created with", () => {
    const pg = compose.services.postgres!;
    const env = pg.environment!;
    for (const replica of replicas) {
      const url = new URL(replica.environment!.AGENT_ATTR_LOG_DB!);
      expect(url.protocol).toBe("postgres:");
      expect(url.hostname).toBe("postgres");
      expect(url.port).toBe("5432");
      expect(decodeURIComponent(url.username)).toBe(env.POSTGRES_USER!);
      expect(decodeURIComponent(url.password)).toBe(env.POSTGRES_PASSWORD!);
      expect(url.pathname).toBe(`/${env.POSTGRES_DB}`);
    }
    expect(pg.healthcheck!.test).toEqual(["CMD", "pg_isready", "-U", env.POSTGRES_USER!, "-d", env.POSTGRES_DB!]);
  });

  test("the replicas' limits are in the Redis service, kept across its restarts (appendonly)", () => {
    for (const replica of replicas) expect(replica.environment!.AGENT_ATTR_REDIS_URL).toBe("redis://redis:6379");
    expect(compose.services.redis!.command).toEqual(["redis-server", "--appendonly", "yes"]);
  });

  test("both replicas start after healthy PostgreSQL and Redis, and sign with one key file on one named volume", () => {
    for (const replica of replicas) {
      expect(replica.depends_on).toEqual({ postgres: { condition: "service_healthy" }, redis: { condition: "service_healthy" } });
      const keyDir = replica.environment!.AGENT_ATTR_SIGNING_KEY!.replace(/\/[^/]+$/, "");
      const mount = replica.volumes!.find((volume) => volume.split(":")[1] === keyDir);
      expect(mount).toBe(`keys:${keyDir}`);
    }
    expect(Object.keys(compose.volumes!)).toContain("keys");
    expect(compose.services.postgres!.healthcheck).toBeDefined();
    expect(compose.services.redis!.healthcheck).toBeDefined();
  });

  test("the published ports default to 8080 and 8081, reach the image's PORT, and can be moved (AGENT_ATTR_PORT_1/2)", () => {
    const imagePort = /PORT=(\d+)/.exec(read("Dockerfile"))![1]!;
    const ports = replicas.map((replica) => replica.ports!.map((port) => substitute(port)));
    expect(ports).toEqual([[`8080:${imagePort}`], [`8081:${imagePort}`]]);
    const moved = replicas.map((replica) =>
      replica.ports!.map((port) => substitute(port, { AGENT_ATTR_PORT_1: "127.0.0.1:18080", AGENT_ATTR_PORT_2: "127.0.0.1:18081" })),
    );
    expect(moved).toEqual([[`127.0.0.1:18080:${imagePort}`], [`127.0.0.1:18081:${imagePort}`]]);
  });

  test("a replica is given longer to stop than the proxy's shutdown grace", () => {
    const graceMs = configSchema.parse({}).server.shutdownGraceMs;
    for (const replica of replicas) {
      const [, seconds] = /^(\d+)s$/.exec(replica.stop_grace_period!)!;
      expect(Number(seconds) * 1000).toBeGreaterThan(graceMs);
    }
  });
});

describe("test/docker/compose.test.yml (the compose test's override)", () => {
  const dockerfile = read("Dockerfile");
  const imagesScript = read("scripts/docker-test-images.sh");
  const bunVersion = (JSON.parse(read("package.json")) as { packageManager: string }).packageManager.replace("bun@", "");

  test("the base images it passes are build args the Dockerfile's FROM lines use, with the official defaults", () => {
    expect(dockerfile).toContain(`ARG BUN_IMAGE=oven/bun:${bunVersion}`);
    expect(dockerfile).toContain("ARG RUNTIME_IMAGE=debian:bookworm-slim");
    expect(dockerfile).toMatch(/^FROM \$\{BUN_IMAGE\} AS build$/m);
    expect(dockerfile).toMatch(/^FROM \$\{RUNTIME_IMAGE\}$/m);
    for (const name of ["replica-1", "replica-2"]) {
      const build = override.services[name]!.build as { args: Record<string, string> };
      expect(Object.keys(build.args).sort()).toEqual(["BUN_IMAGE", "RUNTIME_IMAGE"]);
    }
  });

  test("every image it runs or builds on is one scripts/docker-test-images.sh builds (or the replicas' own)", () => {
    const built = new Set(["agent-attr-test/debian:bookworm", `agent-attr-test/bun:${bunVersion}`]);
    for (const [, tag] of imagesScript.matchAll(/^build (agent-attr-test\/\S+) /gm)) built.add(tag!);
    expect([...built].sort()).toEqual([
      `agent-attr-test/bun:${bunVersion}`,
      "agent-attr-test/debian:bookworm",
      "agent-attr-test/postgres:15",
      "agent-attr-test/redis:7",
    ]);
    for (const [name, service] of Object.entries(override.services)) {
      const images = [service.image, ...Object.values((service.build as { args?: Record<string, string> } | undefined)?.args ?? {})];
      for (const image of images.filter((i): i is string => i !== undefined)) {
        if (name.startsWith("replica-") && image === service.image) expect(image).toBe("agent-attr-test/agent-attr:compose");
        else expect(built).toContain(image);
      }
    }
  });

  test("it overrides no service the project's file does not have, besides the fake upstream", () => {
    expect(Object.keys(override.services).filter((name) => !(name in compose.services))).toEqual(["fake-upstream"]);
  });
});
