// The generated declarations (./agent-attr-env.d.ts.txt, see ./generate.ts), embedded in the build.
import declarations from "./agent-attr-env.d.ts.txt" with { type: "text" };

/** The file `agent-attr init` and `agent-attr types` write beside a config. */
export const environmentFile = "agent-attr-env.d.ts";
export const environmentDeclarations: string = declarations;
