/**
 * Signed redactions. Erasure and retention set a record's personal fields and salt to NULL and
 * leave its hash intact, so the chain alone cannot tell a lawful redaction from someone with write
 * access to the database wiping a record's attribution (user, key id, task…) and appending an
 * erasure event that names it: the event's hash is easy to compute, its formula is public. The
 * event is therefore signed with the instance's Ed25519 key (a file, not in the database) over its
 * kind, the chain id and the seqs it names. Verify accepts a redaction only under a signed event
 * (./verify.ts `redactionCover`); a replayed signed event names only seqs that were lawfully
 * redacted, and the chain id keeps it from covering another trail.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { seqRanges, type ChainEvent } from "./chain.ts";
import { signBytes, verifyBytes } from "./signing.ts";

export type RedactionKind = "erasure" | "retention";

/** The event kinds that redact records (and whose `details.seqs` say which). */
export const redactionKinds: readonly string[] = ["erasure", "retention"] satisfies RedactionKind[];

/** What signs a trail's redaction events: its signing key and its chain id. */
export interface RedactionSigner {
  key: KeyObject;
  chainId: string;
}

/** Why a trail without its signing key refuses to erase (its erasure event could not be signed). */
export const erasureNeedsKey =
  "erasure events are signed, and this trail has no signing key: pass --signing-key FILE (or set audit.signingKey)";

/** The signed bytes: the kind, the chain and the seq ranges as the event's `details.seqs` holds them. */
export function redactionPayload(chainId: string, kind: string, ranges: readonly (readonly [number, number])[]): string {
  return `agent-attr-redaction/v1\n${chainId}\n${kind}\n${JSON.stringify(ranges)}`;
}

/**
 * The event recording a redaction of `seqs` (with `details.seqs` as ranges), signed when there is
 * a signer. Without one (a CLI without the key file) the event is unsigned, and verify rejects the
 * redactions it names: callers that can refuse instead do (`audit delete` needs the key).
 */
export function redactionEvent(
  signer: RedactionSigner | null,
  kind: RedactionKind,
  actor: string,
  details: Record<string, unknown>,
  seqs: readonly number[],
): ChainEvent {
  const ranges = seqRanges(seqs);
  const signature = signer ? { signature: signBytes(signer.key, redactionPayload(signer.chainId, kind, ranges)) } : {};
  return { kind, actor, details: { ...details, seqs: ranges, ...signature } };
}

/** The well-formed [from, to] ranges of an event's `details.seqs` (stored JSON text or parsed). */
export function claimedRanges(details: unknown): [number, number][] {
  const seqs = (parsedDetails(details) as { seqs?: unknown } | null)?.seqs;
  if (!Array.isArray(seqs)) return [];
  const ranges: [number, number][] = [];
  for (const range of seqs) {
    if (Array.isArray(range) && typeof range[0] === "number" && typeof range[1] === "number") ranges.push([range[0], range[1]]);
  }
  return ranges;
}

/**
 * The event's signature verifies with `key` (the public key, or the private one it derives from)
 * for this chain and kind, over the ranges it names.
 */
export function redactionSigned(key: KeyObject, chainId: string | null, kind: string, details: unknown): boolean {
  const signature = (parsedDetails(details) as { signature?: unknown } | null)?.signature;
  if (typeof signature !== "string" || chainId === null) return false;
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  return verifyBytes(publicKey, redactionPayload(chainId, kind, claimedRanges(details)), signature);
}

/**
 * The first erasure or retention event among `events` (those since a signed checkpoint) that names
 * seqs without a valid signature, described for the operator; null when there is none. A
 * checkpointer signs no checkpoint over such an event: its signature would make the event's cover
 * look legitimate to a later verify (the legacy rule of ./verify.ts `redactionCover`).
 */
export function unsignedRedaction(
  key: KeyObject,
  chainId: string | null,
  events: Iterable<{ seq: number; kind: string; details: string }>,
): string | null {
  for (const event of events) {
    if (!redactionKinds.includes(event.kind) || claimedRanges(event.details).length === 0) continue;
    if (redactionSigned(key, chainId, event.kind, event.details)) continue;
    return (
      `no checkpoint signed: the ${event.kind} event at seq ${event.seq} names redacted records but is not signed by this ` +
      "instance's key (a forged redaction, or one written without the key file); run agent-attr audit verify"
    );
  }
  return null;
}

function parsedDetails(details: unknown): unknown {
  if (typeof details !== "string") return details;
  try {
    return JSON.parse(details) as unknown;
  } catch {
    return null;
  }
}
