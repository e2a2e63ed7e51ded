/**
 * Verifying a compact JWS (RFC 7515/7519): the signature with a configured key of the token's
 * algorithm, then `exp` (required), `nbf`, `iss` and `aud`, with a small clock tolerance.
 * Throws a plain Error whose message says what is wrong; it never contains the token.
 */
import { verifyParams, type Algorithm, type VerificationKey } from "./keys.ts";

export interface Expectations {
  issuer?: readonly string[];
  audience?: readonly string[];
  clockToleranceSec: number;
  now: number;
}

export type Claims = Record<string, unknown>;

const decodeJSON = (segment: string, what: string): Record<string, unknown> => {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch {
    throw new Error(`the token's ${what} is not base64url JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`the token's ${what} is not a JSON object`);
  return value as Record<string, unknown>;
};

export async function verifyJWT(token: string, keys: readonly VerificationKey[], expect: Expectations): Promise<Claims> {
  const parts = token.split(".");
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[0]!) || !/^[A-Za-z0-9_-]*$/.test(parts[1]! + parts[2]!)) {
    throw new Error("the credential is not a JWT (three base64url parts)");
  }
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const header = decodeJSON(headerPart, "header");
  const alg = header.alg;
  const accepted = [...new Set(keys.map((k) => k.alg))];
  if (typeof alg !== "string" || !accepted.includes(alg as Algorithm)) {
    throw new Error(`the token's algorithm '${String(alg)}' is not accepted here (accepted: ${accepted.join(", ")})`);
  }
  if (header.crit !== undefined) throw new Error("the token has 'crit' header extensions, which are not supported");
  const kid = typeof header.kid === "string" ? header.kid : null;
  const candidates = keys.filter((k) => k.alg === alg && (kid === null || k.kid === null || k.kid === kid));
  if (candidates.length === 0) throw new Error(`no configured key has kid '${kid}'`);
  const signature = Buffer.from(signaturePart, "base64url");
  const signed = new TextEncoder().encode(`${headerPart}.${payloadPart}`);
  let valid = false;
  for (const candidate of candidates) {
    if (await crypto.subtle.verify(verifyParams(candidate.alg), candidate.key, signature, signed)) {
      valid = true;
      break;
    }
  }
  if (!valid) throw new Error("the token's signature does not verify with the configured key");

  const claims = decodeJSON(payloadPart, "payload");
  const now = expect.now / 1000;
  const skew = expect.clockToleranceSec;
  const time = (name: string) => {
    const value = claims[name];
    if (value === undefined) return null;
    if (typeof value !== "number" || !Number.isFinite(value)) throw new Error(`the token's '${name}' is not a number of seconds`);
    return value;
  };
  const exp = time("exp");
  if (exp === null) throw new Error("the token has no 'exp'; tokens must expire");
  if (now >= exp + skew) throw new Error(`the token expired at ${new Date(exp * 1000).toISOString()}`);
  const nbf = time("nbf");
  if (nbf !== null && now < nbf - skew) throw new Error(`the token is not valid before ${new Date(nbf * 1000).toISOString()}`);
  if (expect.issuer) {
    if (typeof claims.iss !== "string" || !expect.issuer.includes(claims.iss)) {
      throw new Error(`the token's issuer '${String(claims.iss ?? "(none)")}' is not ${expect.issuer.map((i) => `'${i}'`).join(" or ")}`);
    }
  }
  if (expect.audience) {
    const aud = typeof claims.aud === "string" ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    if (!aud.some((a) => typeof a === "string" && expect.audience!.includes(a))) {
      throw new Error(
        `the token's audience ${JSON.stringify(claims.aud ?? null)} does not include ${expect.audience.map((a) => `'${a}'`).join(" or ")}`,
      );
    }
  }
  return claims;
}
