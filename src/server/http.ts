/** Small helpers the audit API's routes share: its error answers (from the one catalogue, ../errors.ts) and the query string. */
import { z } from "zod";
import { apiError } from "../errors.ts";

export { apiError };

/** The query string's parameters as an object (for a zod filter schema). */
export const queryOf = (request: Request) => Object.fromEntries(new URL(request.url).searchParams);

/** A 400 naming what was invalid and why, in zod's words. */
export const invalid = (what: string, error: z.ZodError) => apiError("invalid_query", `Invalid ${what}: ${z.prettifyError(error)}`);

/**
 * A request's JSON body checked against `schema`: the parsed value, or the 400 to answer (a body
 * that is not JSON names `example`; one the schema refuses says why).
 */
export async function jsonBody<S extends z.ZodType>(
  request: Request,
  schema: S,
  what: string,
  example: string,
): Promise<{ data: z.output<S> } | { error: Response }> {
  let body: unknown;
  try {
    body = await request.json();
  } catch {
    return { error: apiError("invalid_json", `The body must be a JSON object such as ${example}.`) };
  }
  const parsed = schema.safeParse(body);
  return parsed.success ? { data: parsed.data } : { error: invalid(what, parsed.error) };
}
