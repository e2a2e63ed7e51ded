/** Validates a plugin factory's options with zod, failing with a message that names the option. */
import { z } from "zod";

export function parseOptions<S extends z.ZodType>(plugin: string, schema: S, options: unknown): z.output<S> {
  const result = schema.safeParse(options ?? {});
  if (result.success) return result.data;
  throw new Error(`Invalid options for plugin '${plugin}':\n${z.prettifyError(result.error)}`);
}
