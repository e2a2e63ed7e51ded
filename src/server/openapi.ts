/**
 * The OpenAPI 3.1 document of the audit API (`GET /openapi.json`), built from the same zod schemas
 * that validate the requests and type the responses, so it cannot drift from them. A test checks
 * that every /audit route the app serves is described here.
 */
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import { exportFilterSchema, exportManifestSchema } from "../trail/export.ts";
import { recordFilterSchema, summaryFilterSchema } from "../store/filters.ts";
import { recordPageSchema } from "../store/results.ts";
import { auditRecordSchema } from "../trail/record.ts";
import { summarySchema } from "../store/results.ts";
import { verifyReportSchema } from "../trail/verify.ts";
import type { Role } from "./roles.ts";
import { overviewFilterSchema, overviewSchema } from "../store/overview.ts";
import { chainEntrySchema, eventFilterSchema, eventPageSchema, trailStatusSchema } from "../trail/events.ts";
import { createdKeySchema, newKeySchema } from "../store/keys.ts";
import { proxyKeySchema } from "../store/keys.ts";
import { consentFilterSchema, consentSchema, newConsentSchema } from "../store/consents.ts";
import { limitUsageSchema } from "../limit-usage.ts";

export interface AuditOperation {
  method: "get" | "delete" | "post";
  /** Elysia-style path, e.g. `/audit/records/:id`. */
  path: string;
  summary: string;
  role: Role;
  query?: z.ZodObject;
  /** A JSON request body. */
  body?: z.ZodType;
  response: z.ZodType;
  /** The status of a successful answer (default 200). */
  status?: number;
  /** Content types of a successful answer (default JSON). */
  contentTypes?: string[];
  /** Other answers the route gives, beyond the access and query errors. */
  otherErrors?: Record<number, string>;
}

export const auditOperations: AuditOperation[] = [
  {
    method: "get",
    path: "/audit/records",
    summary: "Records, newest first, with filters and cursor pagination",
    role: "auditor",
    query: recordFilterSchema,
    response: recordPageSchema,
  },
  {
    method: "get",
    path: "/audit/records/:id",
    summary: "One record, by the id its response carried in X-Audit-Record-ID",
    role: "auditor",
    response: auditRecordSchema,
    otherErrors: { 404: "No record has this id." },
  },
  {
    method: "get",
    path: "/audit/user/:id",
    summary: "One user's records (e.g. ?days=30)",
    role: "auditor",
    query: recordFilterSchema.omit({ user: true }),
    response: recordPageSchema,
  },
  {
    method: "get",
    path: "/audit/agent/:id",
    summary: "One agent's records",
    role: "auditor",
    query: recordFilterSchema.omit({ agent: true }),
    response: recordPageSchema,
  },
  {
    method: "get",
    path: "/audit/task/:id",
    summary: "One task context's records (URL-encode it)",
    role: "auditor",
    query: recordFilterSchema.omit({ task: true }),
    response: recordPageSchema,
  },
  {
    method: "get",
    path: "/audit/verify",
    summary: "Recompute the hash chain and check the signed checkpoints (409 when tampered, naming the first bad seq and why)",
    role: "auditor",
    response: verifyReportSchema,
    otherErrors: { 409: "The trail is tampered: the body is the same report with ok false and the failure." },
  },
  {
    method: "delete",
    path: "/audit/user/:id",
    summary: "Erase a user's personal data (GDPR Art. 17); the same answer whether or not the user had records",
    role: "admin",
    response: z.object({ status: z.literal("erased") }),
    otherErrors: {
      409: "A record to be erased does not match the chain (edited in the database): nothing is erased; run audit verify and restore from a backup.",
    },
  },
  {
    method: "get",
    path: "/audit/export/:format",
    summary: "Stream an export (csv, json or ndjson); its id is in X-Audit-Export-ID",
    role: "auditor",
    query: exportFilterSchema,
    response: z.string(),
    contentTypes: ["text/csv", "application/json", "application/x-ndjson"],
    otherErrors: {
      404: "No such export format.",
      409: "A record to be exported does not match the chain (edited behind the store): nothing is signed; run audit verify.",
    },
  },
  {
    method: "get",
    path: "/audit/exports/:id/manifest",
    summary: "The signed manifest of a finished export",
    role: "auditor",
    response: exportManifestSchema,
    otherErrors: { 404: "No finished export has this id." },
  },
  {
    method: "get",
    path: "/audit/pubkey",
    summary: "The public key that signs checkpoints and manifests (PEM)",
    role: "auditor",
    response: z.string(),
    contentTypes: ["application/x-pem-file"],
  },
  {
    method: "get",
    path: "/audit/summary",
    summary:
      "Calls, tokens by kind, exact cost and unpriced calls per agent, user, task, model, provider, proxy key, day, hour or outcome:status",
    role: "auditor",
    query: summaryFilterSchema,
    response: summarySchema,
  },
  {
    method: "get",
    path: "/audit/overview",
    summary:
      "Spend, calls and tokens per hour or day, the top agents, users, tasks and models, calls by outcome:status and calls in flight, for one time range",
    role: "auditor",
    query: overviewFilterSchema,
    response: overviewSchema,
  },
  {
    method: "get",
    path: "/audit/limits",
    summary: "What is used of each limit and budget now, for the scopes of recent calls (read only)",
    role: "auditor",
    response: z.object({ plugins: z.array(z.string()), limits: z.array(limitUsageSchema) }),
    otherErrors: { 503: "A limit plugin's store (e.g. Redis) does not answer." },
  },
  {
    method: "get",
    path: "/audit/events",
    summary:
      "Chain events (queries, exports, erasures, retention runs, verifications, key changes, refused access), newest first, with cursor pagination",
    role: "auditor",
    query: eventFilterSchema,
    response: eventPageSchema,
  },
  {
    method: "get",
    path: "/audit/trail/status",
    summary: "The chain's last seq, its last signed checkpoint and its last verification",
    role: "auditor",
    response: trailStatusSchema,
  },
  {
    method: "get",
    path: "/audit/chain/:seq",
    summary: "One chain entry's hashes, commitment and the signed checkpoint that covers it",
    role: "auditor",
    response: chainEntrySchema,
    otherErrors: { 404: "No entry has this seq." },
  },
  {
    method: "get",
    path: "/audit/keys",
    summary: "The proxy keys (ids, identities, tiers, expiry, revocation; never secrets)",
    role: "auditor",
    response: z.object({ keys: z.array(proxyKeySchema) }),
  },
  {
    method: "post",
    path: "/audit/keys",
    summary: "Create a proxy key: the secret is in this answer only (a key_created chain event names the key, never the secret)",
    role: "admin",
    body: newKeySchema,
    response: createdKeySchema,
    status: 201,
    otherErrors: { 400: "The body is not a valid key request; the message names the field." },
  },
  {
    method: "delete",
    path: "/audit/keys/:id",
    summary: "Revoke a proxy key (a key_revoked chain event); the proxy refuses it from the next call",
    role: "admin",
    response: proxyKeySchema,
    otherErrors: { 404: "No key has this id." },
  },
  {
    method: "get",
    path: "/audit/consents",
    summary: "Consents (who allowed which agents to act for them, for what purpose, on which lawful basis), newest first",
    role: "auditor",
    query: consentFilterSchema,
    response: z.object({ consents: z.array(consentSchema) }),
  },
  {
    method: "get",
    path: "/audit/consents/:id",
    summary: "One consent",
    role: "auditor",
    response: consentSchema,
    otherErrors: { 404: "No consent has this id." },
  },
  {
    method: "post",
    path: "/audit/consents",
    summary: "Grant a consent (a consent_granted chain event naming the caller, never the user)",
    role: "admin",
    body: newConsentSchema,
    response: consentSchema,
    status: 201,
    otherErrors: { 400: "The body is not a valid consent; the message names the field." },
  },
  {
    method: "delete",
    path: "/audit/consents/:id",
    summary: "Withdraw a consent (a consent_withdrawn chain event); calls it covered are refused or recorded without it from the next call",
    role: "admin",
    response: consentSchema,
    otherErrors: { 404: "No consent has this id." },
  },
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
    ...(op.body ? { requestBody: { required: true, content: { "application/json": { schema: jsonSchema(op.body, "input") } } } } : {}),
    responses: {
      [op.status ?? 200]: {
        description: "OK",
        content: Object.fromEntries(
          (op.contentTypes ?? ["application/json"]).map((type) => [type, { schema: jsonSchema(op.response, "output") }]),
        ),
      },
      ...(op.query ? { 400: error("A query parameter is invalid; the message names it.") } : {}),
      401: error("No known access token, or one not sent as `Authorization: Bearer <token>`."),
      403: error(`The token's role is not ${op.role}.`),
      ...Object.fromEntries(Object.entries(op.otherErrors ?? {}).map(([status, text]) => [status, error(text)])),
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
