// Between attribute and limit: claimed identity held against the principal's verified identity.
import { expect, test } from "bun:test";
import type { Attribution } from "../../src/pipeline/context.ts";
import { verifyIdentity } from "../../src/pipeline/identity.ts";

const claim = (fields: Partial<Attribution>): Attribution => ({
  agent_id: null, user_id: null, task_context: null, session_id: null, parent_agent_id: null, trace_id: null,
  attribution: "asserted", ...fields,
});

test("fixed fields fill in when nothing is claimed, and the call is verified", () => {
  const { attribution, delegation } = verifyIdentity(claim({ task_context: "t" }), { keyId: "k", identity: { agent_id: "bot", user_id: "alice" } });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: "alice", task_context: "t", attribution: "verified" });
  expect(delegation).toBeNull();
});

test("a claim equal to the fixed value, or matching the globs, passes", () => {
  const { attribution } = verifyIdentity(claim({ agent_id: "bot", user_id: "team-a-bob" }), { keyId: "k", identity: { agent_id: "bot" }, users: ["team-a-*", "ops"] });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: "team-a-bob" });
});

test("a glob is anchored: team-a-* does not admit xteam-a-bob", () => {
  expect(() => verifyIdentity(claim({ user_id: "xteam-a-bob" }), { keyId: "k", users: ["team-a-*"] })).toThrow("may not act as user 'xteam-a-bob'");
});

test("a fixed task (from a token) refuses a different claimed task", () => {
  expect(() => verifyIdentity(claim({ task_context: "other" }), { keyId: "sub", identity: { task_context: "PR #1" } })).toThrow(
    "sub may not act as task 'other': it is restricted to task 'PR #1'. Send a matching X-Task-Context header, or none.",
  );
});

test("record mode keeps every mismatched claim, and the act chain, in delegation", () => {
  const act = { sub: "orchestrator", act: { sub: "alice" } };
  const { attribution, delegation } = verifyIdentity(claim({ agent_id: "evil", user_id: "root" }), {
    keyId: "k", identity: { agent_id: "bot" }, users: ["team-a-*"], onMismatch: "record", act,
  });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: null, attribution: "verified" });
  expect(JSON.parse(delegation!)).toEqual({ act, asserted: { agent_id: "evil", user_id: "root" } });
});
