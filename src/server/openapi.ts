/**
 * The OpenAPI 3.1 document of the audit API (`GET /openapi.json`), built from the same zod schemas
 * that validate the requests and type the responses, so it cannot drift from them. A test checks
 * that every /audit route the app serves is described here.
 */
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import { recordFilterSchema, summaryFilterSchema } from "../audit/filters.ts";
import { recordPageSchema } from "../audit/query.ts";
import { auditRecordSchema } from "../audit/record.ts";
import { summarySchema } from "../audit/summary.ts";
import type { Role } from "./roles.ts";

export interface AuditOperation {
  method: "get" | "delete";
  /** Elysia-style path, e.g. `/audit/records/:id`. */
  path: string;
  summary: string;
  role: Role;
  query?: z.ZodObject;
  response: z.ZodType;
  /** Content type of a successful answer (default JSON). */
  contentType?: string;
}


export const auditOperations: AuditOperation[] = [
  { method: "get", path: "/audit/records", summary: "Records, newest first, with filters and cursor pagination", role: "auditor", query: recordFilterSchema, response: recordPageSchema },
  { method: "get", path: "/audit/records/:id", summary: "One record, by the id its response carried in X-Audit-Record-ID", role: "auditor", response: auditRecordSchema },
  { method: "get", path: "/audit/user/:id", summary: "One user's records (e.g. ?days=30)", role: "auditor", query: recordFilterSchema.omit({ user: true }), response: recordPageSchema },
  { method: "get", path: "/audit/agent/:id", summary: "One agent's records", role: "auditor", query: recordFilterSchema.omit({ agent: true }), response: recordPageSchema },
  { method: "get", path: "/audit/task/:id", summary: "One task context's records (URL-encode it)", role: "auditor", query: recordFilterSchema.omit({ task: true }), response: recordPageSchema },
  { method: "get", path: "/audit/summary", summary: "Calls, tokens by kind, exact cost and unpriced calls per agent, user, task, model, provider or day", role: "auditor", query: summaryFilterSchema, response: summarySchema },
];

const errorSchema = {
  type: "object",
  properties: {
    error: {
      type: "object",
      properties: { message: { type: "string" }, type: { type: "string" }, code: { type: ["string", "null"] } },
      required: ["message", "type"],
    },
  },
  required: ["error"],
};

function jsonSchema(schema: z.ZodType, io: "input" | "output"): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
}

function operation(op: AuditOperation) {
  const pathParams = [...op.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: "path", required: true, schema: { type: "string" } }));
  const queryParams = op.query
    ? Object.entries(op.query.shape).map(([name, field]) => ({
        name,
        in: "query",
        required: !(field as z.ZodType).safeParse(undefined).success,
        schema: jsonSchema(field as z.ZodType, "input"),
      }))
    : [];
  const error = (description: string) => ({ description, content: { "application/json": { schema: errorSchema } } });
  return {
    summary: op.summary,
    description: `Needs the ${op.role} role${op.role === "auditor" ? " (admin also may)" : ""} when access tokens are configured.`,
    security: [{ bearer: [] }],
    parameters: [...pathParams, ...queryParams],
    responses: {
      200: { description: "OK", content: { [op.contentType ?? "application/json"]: { schema: jsonSchema(op.response, "output") } } },
      ...(op.query ? { 400: error("A query parameter is invalid; the message names it.") } : {}),
      401: error("No known access token."),
      403: error(`The token's role is not ${op.role}.`),
      ...(op.path.includes(":id") && op.method === "get" && op.response === auditRecordSchema ? { 404: error("No such record.") } : {}),
    },
  };
}

export function openapiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of auditOperations) {
    const path = op.path.replace(/:(\w+)/g, "{$1}");
    paths[path] = { ...paths[path], [op.method]: operation(op) };
  }
  return {
    openapi: "3.1.0",
    info: { title: "agent-attr audit API", version: pkg.version },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    paths,
  };
}
