/**
 * The consent stage, after attribution and before limits: is the call covered by an active
 * consent of the user it acts for (../store/consents.ts `uncovered`)? Per the config's `consent`
 * (globally, or per the tier the credential gives): "off" looks nothing up; "record" notes the
 * consent that covered the call, or that none did; "enforce" also refuses an uncovered call with
 * 403 `consent_required` — recorded, never forwarded.
 *
 * Which consent: the one a verified token names (`Principal.consent`: an id, or the purpose the
 * call is for); in open mode (no principal) the one `X-Consent-ID` names, kept as asserted;
 * otherwise the newest active consent of the user that covers the agent and task. A named consent
 * must cover the call itself: naming one is never a way around its agents, task pattern or end.
 * A call that acts for no user has no data subject and is not checked (recorded as "none").
 * The store answers every lookup afresh, so a withdrawal applies from the next call.
 */
import type { Config } from "../config/schema.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import { checkIdentifier, headerText } from "../identifiers.ts";
import { uncovered, type Consent, type ConsentQuestion } from "../store/consents.ts";
import type { CallConsent, CallContext } from "./context.ts";
import type { ConsentPolicy, Runtime } from "./runtime.ts";

export function consentPolicy(config: Config["consent"]): ConsentPolicy {
  if (typeof config === "string") return { modeFor: () => config };
  return { modeFor: (tier) => (tier !== undefined ? (config.tiers[tier] ?? config.mode) : config.mode) };
}

export const consentHeader = "x-consent-id";

/**
 * Appends `consent_expired` events for consents past their end, every `everyMs` (an expired
 * consent covers nothing from its end on, whether or not its event is written yet). A failed
 * sweep is logged and tried again at the next tick.
 */
export function sweepConsentExpiries(rt: Pick<Runtime, "consents" | "log">, everyMs = 60_000): () => void {
  let running = false;
  const sweep = async () => {
    if (running) return;
    running = true;
    try {
      await rt.consents.recordExpiries();
    } catch (error) {
      rt.log.warn(`recording expired consents failed (retried in ${everyMs / 1000} s): ${errorMessage(error)}`);
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void sweep(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

const none: CallConsent = { consent_id: null, purpose: null, lawful_basis: null, consent_source: "none" };

/** Holds the call to its user's consents per the mode in force; nothing to wait for when it is "off". */
export function checkConsent(ctx: CallContext, rt: Runtime): Promise<void> | undefined {
  const mode = rt.consent.modeFor(ctx.principal?.tier);
  return mode === "off" ? undefined : checkConsentIn(mode, ctx, rt);
}

async function checkConsentIn(mode: "record" | "enforce", ctx: CallContext, rt: Runtime): Promise<void> {
  const a = ctx.attribution;
  if (a.user_id === null) {
    ctx.consent = none;
    return;
  }
  const claim = ctx.principal ? (ctx.principal.consent ?? null) : headerClaim(ctx.request.headers);
  const question: ConsentQuestion = {
    user_id: a.user_id,
    agent_id: a.agent_id,
    task_context: a.task_context,
    purpose: claim?.purpose ?? null,
  };
  let found: { consent: Consent | null; why: string };
  try {
    found = claim?.id ? await named(claim.id, question, rt) : await looked(question, rt);
  } catch (error) {
    rt.log.error(`consents cannot be read: ${errorMessage(error)}`);
    if (mode === "record") return void (ctx.consent = none);
    throw new ProxyError(
      "audit_unavailable",
      "The proxy cannot check this call's consent right now (its store does not answer); retry shortly.",
    );
  }
  const { consent } = found;
  if (consent) {
    ctx.consent = {
      consent_id: consent.id,
      purpose: consent.purpose,
      lawful_basis: consent.lawful_basis,
      consent_source: !claim?.id ? "lookup" : ctx.principal ? "jwt" : "header",
    };
    return;
  }
  ctx.consent = none;
  if (mode === "enforce") {
    throw new ProxyError(
      "consent_required",
      `No active consent covers this call: ${found.why}. The user must consent first (an admin records it with 'agent-attr consent grant' or POST /audit/consents); the call was not forwarded.`,
    );
  }
}

/** X-Consent-ID, in open mode: an id the client asserts. */
function headerClaim(headers: Headers): { id?: string; purpose?: string } | null {
  const id = checkIdentifier(headerText(headers, consentHeader), { where: "Header X-Consent-ID", max: 64, header: true });
  return id ? { id } : null;
}

async function named(id: string, question: ConsentQuestion, rt: Runtime) {
  const consent = await rt.consents.find(id);
  if (!consent) return { consent: null, why: `no consent has the id '${id}' the call names` };
  const why = uncovered(consent, question);
  return why ? { consent: null, why } : { consent, why: "" };
}

async function looked(question: ConsentQuestion, rt: Runtime) {
  const consents = await rt.consents.forUser(question.user_id);
  const consent = consents.find((c) => uncovered(c, question) === null) ?? null;
  const forWhat = [
    `agent '${question.agent_id ?? "(none)"}'`,
    question.task_context !== null ? "this task" : null,
    question.purpose !== null ? `the purpose '${question.purpose}'` : null,
  ]
    .filter(Boolean)
    .join(", ");
  return { consent, why: `no active consent of user '${question.user_id}' covers ${forWhat}` };
}
