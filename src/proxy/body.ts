/**
 * Reads a request body once, refusing it as soon as it passes `limit` bytes: a declared
 * Content-Length over the limit is refused without reading a byte, a chunked body as soon as the
 * running total passes it.
 */
import { ProxyError } from "../errors.ts";

export async function readBody(request: Request, limit: number): Promise<Uint8Array> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) throw tooLarge(limit);
  // A declared length is enforced by HTTP framing: read natively, without a JavaScript stream.
  if (declared >= 0) return request.bytes();
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
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

function tooLarge(limit: number): ProxyError {
  return new ProxyError(
    "body_too_large",
    `Request body is larger than the proxy's limit of ${limit} bytes; send a smaller request or raise server.maxBodyBytes in agent-attr.config.ts.`,
  );
}
