// GET /openapi.json: the audit API described from the schemas that validate it, every route included.
import { expect, test } from "bun:test";
import { createApp } from "../../src/server/app.ts";
import { auditOperations } from "../../src/server/openapi.ts";
import { proxyBeforeAll } from "../helpers/proxy.ts";

const setup = proxyBeforeAll();

interface Document {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        parameters: { name: string; in: string; required: boolean }[];
        responses: Record<string, { content?: Record<string, { schema: { properties?: Record<string, unknown> } }> }>;
      }
    >
  >;
}

test("every /audit route the app serves is documented, with its parameters and response schema", async () => {
  const response = await fetch(`${setup.proxy.url}/openapi.json`);
  expect(response.status).toBe(200);
  const doc = (await response.json()) as Document;
  expect(doc.openapi).toBe("3.1.0");
  const served = createApp(setup.proxy.runtime)
    .routes.filter((route) => route.path.startsWith("/audit"))
    .map((route) => `${route.method.toLowerCase()} ${route.path.replace(/:(\w+)/g, "{$1}")}`)
    .sort();
  const documented = Object.entries(doc.paths)
    .flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method} ${path}`))
    .sort();
  expect(documented).toEqual(served);
  expect(auditOperations.length).toBe(served.length);

  const records = doc.paths["/audit/records"]!.get!;
  expect(records.parameters.map((p) => p.name)).toEqual([
    "agent",
    "user",
    "task",
    "model",
    "provider",
    "outcome",
    "tag",
    "consent",
    "purpose",
    "since",
    "until",
    "days",
    "limit",
    "cursor",
  ]);
  expect(records.parameters.every((p) => p.in === "query" && !p.required)).toBe(true);
  expect(Object.keys(records.responses["200"]!.content!["application/json"]!.schema.properties!)).toEqual(["records", "next_cursor"]);
  const summary = doc.paths["/audit/summary"]!.get!;
  expect(summary.parameters.find((p) => p.name === "by")).toMatchObject({ required: true });
  // Tags: the filter documents both spellings, the grouping names tag:KEY.
  expect(JSON.stringify(records.parameters.find((p) => p.name === "tag"))).toContain("tag.KEY=VALUE");
  expect(JSON.stringify(summary.parameters.find((p) => p.name === "by"))).toContain("tag:KEY");
  expect(doc.paths["/audit/user/{id}"]!.get!.parameters[0]).toMatchObject({ name: "id", in: "path", required: true });
});
