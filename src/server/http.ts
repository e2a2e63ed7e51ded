/** Small helpers the audit API's routes share: its error shape and the query string. */

/** An error answer in the API's (OpenAI-like) shape. */
export function apiError(status: number, code: string, type: string, message: string): Response {
  return Response.json({ error: { message, type, code } }, { status });
}

/** The query string's parameters as an object (for a zod filter schema). */
export const queryOf = (request: Request) => Object.fromEntries(new URL(request.url).searchParams);
