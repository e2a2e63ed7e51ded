/** Small helpers the audit API's routes share: its error answers (from the one catalogue, ../errors.ts) and the query string. */
export { apiError } from "../errors.ts";

/** The query string's parameters as an object (for a zod filter schema). */
export const queryOf = (request: Request) => Object.fromEntries(new URL(request.url).searchParams);
