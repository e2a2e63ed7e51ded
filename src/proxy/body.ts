/**
 * Reads a request body once, refusing it as soon as it passes `limit` bytes: a declared
 * Content-Length over the limit is refused without reading a byte, a chunked body as soon as the
 * running total passes it. The whole body must arrive within `timeoutMs` (0: no deadline): proxied
 * routes have no server idle timeout, so without it an upload that stops sending would hold its
 * connection for ever. Past the deadline the refusal closes the connection.
 */
import { ProxyError } from "../errors.ts";

export async function readBody(request: Request, limit: number, timeoutMs: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) throw tooLarge(limit);
  // A declared length is enforced by HTTP framing: read natively, without a JavaScript stream,
  // settling one promise from the read or the deadline (whichever is first; the other is ignored).
  if (declared >= 0 && timeoutMs > 0) {
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    const timer = setTimeout(() => reject(bodyTimeout(timeoutMs)), timeoutMs);
    request.bytes().then(resolve, reject);
    try {
      return await promise;
    } finally {
      clearTimeout(timer);
    }
  }
  const deadline = bodyDeadline(timeoutMs);
  try {
    return await readWithin(request, declared, limit, deadline.expired);
  } finally {
    deadline.clear();
  }
}

async function readWithin(request: Request, declared: number, limit: number, expired: Promise<never>): Promise<Uint8Array> {
  if (declared >= 0) {
    const body = request.bytes();
    body.catch(() => {}); // settles after a refusal past the deadline
    return Promise.race([body, expired]);
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    let result: Awaited<ReturnType<typeof reader.read>>;
    try {
      result = await Promise.race([reader.read(), expired]);
    } catch (error) {
      reader.cancel().catch(() => {});
      throw error;
    }
    const { done, value } = result;
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

function bodyDeadline(ms: number): { expired: Promise<never>; clear(): void } {
  if (ms <= 0) return { expired: new Promise<never>(() => {}), clear() {} };
  let timer: Timer | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(bodyTimeout(ms)), ms);
  });
  return { expired, clear: () => clearTimeout(timer) };
}

function bodyTimeout(ms: number): ProxyError {
  return new ProxyError(
    "body_timeout",
    `The request body did not arrive within ${ms} ms; send it without pauses, or raise server.bodyTimeoutMs in agent-attr.config.ts.`,
    // The rest of the body is never read: the connection cannot carry another request.
    { connection: "close" },
  );
}

function tooLarge(limit: number, setting = "server.maxBodyBytes"): ProxyError {
  return new ProxyError(
    "body_too_large",
    `Request body is larger than the proxy's limit of ${limit} bytes; send a smaller request or raise ${setting} in agent-attr.config.ts.`,
  );
}

/**
 * A request body streamed upstream unread (a file upload), refused past `limit` bytes: a declared
 * Content-Length over it before a byte is read, a chunked body by erroring the stream as soon as
 * its running total passes it (the upstream call then fails). Null when the request has no body.
 */
export function uploadStream(request: Request, limit: number): ReadableStream<Uint8Array> | null {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) throw tooLarge(limit, "server.maxUploadBytes");
  if (!request.body || declared === 0) return null;
  let total = 0;
  return request.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        total += chunk.byteLength;
        if (total > limit) controller.error(tooLarge(limit, "server.maxUploadBytes"));
        else controller.enqueue(chunk);
      },
    }),
  );
}
