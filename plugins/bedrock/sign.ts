/**
 * The upstream call's SigV4 signature, made with the proxy's own AWS credentials by the signer the
 * AWS SDKs use (`@smithy/signature-v4`). A client's signature is for the proxy's host and made
 * with the client's key: it can never be sent on, so the headers it came with are dropped first.
 */
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";

/** AWS credentials, as the AWS SDKs' credential providers resolve them. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** When temporary credentials expire (a provider is asked again on the next call either way). */
  expiration?: Date;
}

/** A function that resolves the credentials, e.g. `fromNodeProviderChain()` of `@aws-sdk/credential-providers`. */
export type AwsCredentialProvider = () => Promise<AwsCredentials>;

/** Headers of a client's own SigV4 signature (and its session token). */
export const clientSignatureHeaders = ["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] as const;

/** A client's `Authorization` that is a SigV4 signature (not a bearer token). */
export function isSigV4(authorization: string | null): boolean {
  return authorization?.startsWith("AWS4-") ?? false;
}

export interface UpstreamRequest {
  url: URL;
  method: string;
  headers: Headers;
  body: Uint8Array | null;
}

/**
 * Signs requests for Bedrock (`service: bedrock`) in `region`; `sign` returns the headers to send.
 * `credentials` is asked on every call (the signer keeps the derived signing key per day and key).
 */
export function bedrockSigner(region: string, credentials: AwsCredentials | AwsCredentialProvider) {
  const signer = new SignatureV4({ service: "bedrock", region, credentials, sha256: Sha256 });
  return async function sign(request: UpstreamRequest, signingDate?: Date): Promise<Headers> {
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    headers.host = request.url.host;
    const query: Record<string, string | string[]> = {};
    for (const [name, value] of request.url.searchParams) {
      const present = query[name];
      query[name] = present === undefined ? value : [...(Array.isArray(present) ? present : [present]), value];
    }
    const signed = await signer.sign(
      {
        method: request.method,
        protocol: request.url.protocol,
        hostname: request.url.hostname,
        port: request.url.port ? Number(request.url.port) : undefined,
        // The path as it will be sent (percent-encoding kept): the signer encodes it once more, as SigV4 wants.
        path: request.url.pathname,
        query,
        headers,
        body: request.body ?? undefined,
      },
      { signingDate },
    );
    return new Headers(signed.headers);
  };
}
