/**
 * `agent-attr consent grant|list|show|revoke`: the consents calls are checked against (the
 * config's `consent`), in the primary store the proxy uses (--log-db, AGENT_ATTR_LOG_DB, the
 * config's audit.logDb, ./audit.db; a postgres:// URL too). Granting and withdrawing are chain
 * events naming the CLI's actor; a running proxy applies a withdrawal from its next call.
 * `--format json` prints what the audit API answers: a consent, or `{ "consents": [...] }`.
 */
import { defineCommand } from "citty";
import { z } from "zod";
import { consentFilterSchema, consentStatuses, lawfulBases, newConsentSchema, type Consent } from "../store/consents.ts";
import { withCliAdmin } from "./audit-settings.ts";
import { cliActor, signingKeyArg } from "./audit-trail.ts";
import { parseExpiry } from "./keys.ts";
import { errorMessage } from "../errors.ts";
import type { AuditAdmin } from "../store/contract.ts";
import { cliLog, configArg, logDbArg, parseFlag, parseOptions, UsageError } from "./_shared.ts";

const formatArg = { type: "enum" as const, options: ["text", "json"], default: "text", description: "Output format" };
const storeArgs = { "signing-key": signingKeyArg, "log-db": logDbArg, config: configArg };

const flags = (args: { "log-db"?: string; "signing-key"?: string; config?: string }) => ({
  logDb: args["log-db"],
  signingKey: args["signing-key"],
  config: args.config,
});

export function describeConsent(consent: Consent): string {
  return [
    consent.id,
    consent.status.toUpperCase(),
    `user ${consent.user_id ?? "(erased)"}`,
    `agents ${consent.agents.join(",")}`,
    `purpose ${JSON.stringify(consent.purpose)}`,
    consent.task_pattern ? `tasks ${JSON.stringify(consent.task_pattern)}` : null,
    `basis ${consent.lawful_basis}`,
    `expires ${consent.expires_at ?? "never"}`,
    consent.revoked_at ? `withdrawn ${consent.revoked_at} by ${consent.revoked_by}` : null,
  ]
    .filter(Boolean)
    .join("  ");
}

/** Reading consents also records the expiry of any that ended; a read-only copy is still read (with a warning). */
async function recordExpiries(admin: AuditAdmin): Promise<void> {
  try {
    await admin.consents.recordExpiries();
  } catch (error) {
    cliLog().warn(`the expiry of ended consents could not be recorded in the trail (${errorMessage(error)})`);
  }
}

const print = (format: string, json: unknown, text: string) =>
  process.stdout.write(format === "json" ? `${JSON.stringify(json, null, 2)}\n` : text);

/** The flag each field of a grant comes from, for error messages. */
const flagOf: Record<string, string> = {
  user: "user",
  agents: "agent",
  purpose: "purpose",
  task_pattern: "task-pattern",
  lawful_basis: "basis",
};

function parseGrant(values: Record<string, unknown>) {
  const result = newConsentSchema.safeParse(values);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  throw new UsageError(`--${flagOf[String(issue.path[0])] ?? String(issue.path[0])}: ${issue.message}`);
}

const grant = defineCommand({
  meta: { name: "grant", description: "Record a user's consent (or another lawful basis) for agents to act for them; prints its id" },
  args: {
    user: { type: "string", required: true, description: "The user (data subject) the consent is for" },
    agent: { type: "string", required: true, description: "Agent ID, or comma-separated agent-ID globs ('code-review-*')" },
    purpose: { type: "string", required: true, description: 'What the processing is for, e.g. "PR review" (do not name people)' },
    "task-pattern": { type: "string", description: "Only calls whose task context matches this glob ('PR review #*')" },
    expires: { type: "string", description: "Lifetime (90d, 12h, 2w) or an ISO 8601 date (default: until withdrawn)" },
    basis: { type: "string", default: "consent", description: `Lawful basis (GDPR Art. 6(1)): ${lawfulBases.join(", ")}` },
    format: formatArg,
    ...storeArgs,
  },
  async run({ args }) {
    if (!(lawfulBases as readonly string[]).includes(args.basis))
      throw new UsageError(`--basis: '${args.basis}' is not one of ${lawfulBases.join(", ")}.`);
    const agents = args.agent
      .split(",")
      .map((part) => part.trim())
      .filter(Boolean);
    const expiresAt = args.expires === undefined ? null : parseExpiry(args.expires);
    const request = parseGrant({
      user: args.user,
      agents,
      purpose: args.purpose,
      task_pattern: args["task-pattern"] ?? null,
      lawful_basis: args.basis,
      expires_at: expiresAt?.toISOString() ?? null,
    });
    await withCliAdmin(
      flags(args),
      async (admin) => {
        const consent = await admin.consents.grant(request, cliActor());
        print(args.format, consent, `${consent.id}\n`);
        if (args.format !== "json") process.stderr.write(`Granted: ${describeConsent(consent)}\n`);
      },
      { create: true },
    );
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List consents, newest first (records the expiry of any that ended)" },
  args: {
    user: { type: "string", description: "Only this user's consents" },
    status: { type: "string", description: `Only consents in this state: ${consentStatuses.join(", ")}` },
    format: formatArg,
    ...storeArgs,
  },
  async run({ args }) {
    const filter = parseOptions(consentFilterSchema, { user: args.user, status: args.status });
    await withCliAdmin(flags(args), async (admin) => {
      await recordExpiries(admin);
      const consents = await admin.consents.list(filter);
      const text =
        consents.length === 0
          ? "No consents. Grant one with 'agent-attr consent grant --user ID --agent GLOB --purpose TEXT'.\n"
          : consents.map((consent) => `${describeConsent(consent)}\n`).join("");
      print(args.format, { consents }, text);
    });
  },
});

const consentId = { type: "positional" as const, required: true, description: "Consent id (cns_...), as grant printed it" };
const idSchema = z.string().regex(/^cns_[0-9a-f]{16}$/, "expected a consent id like cns_0123456789abcdef");

const show = defineCommand({
  meta: { name: "show", description: "Show one consent" },
  args: { id: consentId, format: formatArg, ...storeArgs },
  async run({ args }) {
    const id = parseFlag("id", idSchema, args.id);
    await withCliAdmin(flags(args), async (admin) => {
      await recordExpiries(admin);
      const consent = await admin.consents.find(id);
      if (!consent) throw new UsageError(`No consent has id '${id}'; 'agent-attr consent list' shows them.`);
      print(args.format, consent, `${describeConsent(consent)}\n`);
    });
  },
});

const revoke = defineCommand({
  meta: { name: "revoke", description: "Withdraw a consent; a running proxy applies it from the next call" },
  args: { id: consentId, format: formatArg, ...storeArgs },
  async run({ args }) {
    const id = parseFlag("id", idSchema, args.id);
    await withCliAdmin(flags(args), async (admin) => {
      const consent = await admin.consents.revoke(id, cliActor());
      if (!consent) throw new UsageError(`No consent has id '${id}'; 'agent-attr consent list' shows them.`);
      print(args.format, consent, `${consent.status === "withdrawn" ? "Withdrawn" : "Unchanged"}: ${describeConsent(consent)}\n`);
    });
  },
});

export const consentCommand = defineCommand({
  meta: { name: "consent", description: "Grant, list, show and withdraw the consents calls are checked against" },
  subCommands: { grant, list, show, revoke },
});
