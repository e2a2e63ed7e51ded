/**
 * `jwtAttribution({...})`: jwt mode. Each call carries a signed identity token where its SDK sends
 * the provider key (`Authorization: Bearer` or `x-api-key`). The token is verified (signature with
 * the configured key, `exp`, `nbf`, `iss`, `aud`); its claims give the verified agent, user, task
 * and tier (and the consent the call is made under: its id or purpose), and any claims mapped to tags (`tags: { team: "team" }`) fix those tags; its RFC 8693 `act` claim (who acts for whom) is kept in the record's `delegation`.
 * A bad token is a 401, recorded. The proxy calls the provider with its own key.
 */
import {
  ProxyError,
  checkIdentifier,
  definePlugin,
  isObject,
  type Principal,
  oneOrMany,
  parseOptions,
  presentedCredential,
  tagKey,
} from "agent-attr";
import { z } from "zod";
import { jwksKeys, pemKey, secretKey, type VerificationKey } from "./keys.ts";
import { verifyJWT, type Claims } from "./verify.ts";

const optionsSchema = z
  .object({
    /** HS256 shared secret (at least 32 bytes), or the environment variable that holds it. */
    secret: z.string().min(32, "an HS256 secret needs at least 32 bytes").optional(),
    secretEnv: z.string().min(1).optional(),
    /** RS256 or ES256 public key, SPKI PEM file (`BEGIN PUBLIC KEY`). */
    publicKeyFile: z.string().min(1).optional(),
    publicKeyAlg: z.enum(["RS256", "ES256"]).default("RS256"),
    /** JWKS file (`{ "keys": [...] }`); the token's `kid` picks the key. */
    jwksFile: z.string().min(1).optional(),
    /** Accepted `iss` values; omit to accept any issuer. */
    issuer: oneOrMany.optional(),
    /** Accepted `aud` values (the token must name one). */
    audience: oneOrMany,
    /** Seconds of clock difference tolerated for `exp` and `nbf`. */
    clockToleranceSec: z.number().int().nonnegative().max(300).default(30),
    /** Which claims hold the agent, user, task and tier, and the consent id or purpose the call is made under. */
    claims: z
      .object({
        agent: z.string().min(1).default("client_id"),
        user: z.string().min(1).default("sub"),
        task: z.string().min(1).default("task"),
        tier: z.string().min(1).default("tier"),
        consent: z.string().min(1).default("consent_id"),
        purpose: z.string().min(1).default("purpose"),
      })
      .strict()
      .prefault({}),
    /**
     * Tags the token fixes: tag key → the claim that holds its value, e.g. `{ team: "team",
     * "cost-center": "https://example.com/cost_center" }`. A call claiming another value for one
     * (an X-Attr-Tag-* header) is held like an identity claim (`onMismatch`). A claim that is
     * absent or not a string sets no tag.
     */
    tags: z
      .record(z.string(), z.string().min(1))
      .default({})
      .superRefine((tags, ctx) => {
        for (const key of Object.keys(tags))
          if (tagKey(key) === null)
            ctx.addIssue({ code: "custom", path: [key], message: `'${key}' is not a tag key (a-z, 0-9 and '-', at most 64)` });
      }),
    /** A header claiming another agent/user/task than the token: "reject" (403) or "record" it beside the token's. */
    onMismatch: z.enum(["reject", "record"]).default("reject"),
  })
  .strict()
  .refine((o) => [o.secret ?? o.secretEnv, o.publicKeyFile, o.jwksFile].filter(Boolean).length === 1, {
    message: "give exactly one of secret / secretEnv (HS256), publicKeyFile (RS256/ES256) or jwksFile",
  });

export function jwtAttribution(options: z.input<typeof optionsSchema>) {
  const opts = parseOptions("jwt-attribution", optionsSchema, options);
  let keys: VerificationKey[] = [];
  return definePlugin({
    name: "jwt-attribution",
    async setup() {
      if (opts.jwksFile) keys = await jwksKeys(opts.jwksFile);
      else if (opts.publicKeyFile) keys = [await pemKey(opts.publicKeyFile, opts.publicKeyAlg)];
      else {
        const secret = opts.secret ?? process.env[opts.secretEnv!];
        if (!secret) throw new Error(`secretEnv names ${opts.secretEnv}, which is not set; set it to the HS256 secret.`);
        if (Buffer.byteLength(secret) < 32)
          throw new Error(`${opts.secretEnv} holds fewer than 32 bytes; an HS256 secret needs at least 32.`);
        keys = [await secretKey(secret)];
      }
    },
    async authenticate(ctx): Promise<Principal> {
      const token = presentedCredential(ctx.request.headers);
      if (!token) {
        throw new ProxyError(
          "unauthorized",
          "This proxy requires a signed identity token and the call carried none. Send it as your OpenAI or Anthropic API key.",
        );
      }
      let claims: Claims;
      try {
        claims = await verifyJWT(token, keys, {
          issuer: opts.issuer,
          audience: opts.audience,
          clockToleranceSec: opts.clockToleranceSec,
          now: Date.now(),
        });
      } catch (error) {
        throw new ProxyError("unauthorized", `Identity token refused: ${error instanceof Error ? error.message : String(error)}.`);
      }
      const text = (name: string) => (typeof claims[name] === "string" && claims[name] !== "" ? (claims[name] as string) : null);
      // Claims are ids like any header's: NFC, no invisible characters, so an erasure finds them.
      const id = (name: string, task = false) =>
        checkIdentifier(text(name), { where: `The token's ${name} claim`, max: Infinity, text: task });
      const identity = { agent_id: id(opts.claims.agent), user_id: id(opts.claims.user), task_context: id(opts.claims.task, true) };
      const consentId = id(opts.claims.consent);
      const purpose = id(opts.claims.purpose, true);
      const consent = consentId || purpose ? { ...(consentId ? { id: consentId } : {}), ...(purpose ? { purpose } : {}) } : undefined;
      const tags: Record<string, string> = {};
      for (const [key, claim] of Object.entries(opts.tags)) {
        const value = checkIdentifier(text(claim), { where: `The token's ${claim} claim`, max: 256 });
        if (value !== null) tags[tagKey(key)!] = value;
      }
      const act = typeof claims.act === "object" && claims.act !== null ? checkedAct(claims.act, "act") : undefined;
      return {
        keyId: id("sub") ?? text("jti") ?? "(jwt without sub)",
        tier: text(opts.claims.tier) ?? undefined,
        identity: Object.fromEntries(Object.entries(identity).filter(([, v]) => v !== null)),
        tags,
        onMismatch: opts.onMismatch,
        act,
        consent,
      };
    },
  });
}

/** The act chain with every string in it held to the identifier rules (erasure matches its values exactly). */
function checkedAct(value: unknown, path: string): unknown {
  if (typeof value === "string") return checkIdentifier(value, { where: `The token's ${path} claim`, max: Infinity }) ?? value;
  if (Array.isArray(value)) return value.map((item, i) => checkedAct(item, `${path}[${i}]`));
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, checkedAct(item, `${path}.${key}`)]));
  return value;
}
