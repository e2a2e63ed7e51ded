// Between attribute and limit: claimed identity held against the principal's verified identity.
import { expect, test } from "bun:test";
import type { Attribution } from "../../src/pipeline/context.ts";
import { verifyIdentity } from "../../src/pipeline/identity.ts";

const claim = (fields: Partial<Attribution>): Attribution => ({
  agent_id: null,
  user_id: null,
  task_context: null,
  session_id: null,
  parent_agent_id: null,
  trace_id: null,
  attribution: "asserted",
  sources: {},
  tags: {},
  ...fields,
});

test("fixed fields fill in when nothing is claimed, and the call is verified", () => {
  const { attribution, delegation } = verifyIdentity(claim({}), { keyId: "k", identity: { agent_id: "bot", user_id: "alice" } });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: "alice", attribution: "verified" });
  expect(delegation).toBeNull();
});

test("a credential that allows no users refuses any claimed user, saying how to allow one", () => {
  expect(() => verifyIdentity(claim({ user_id: "victim" }), { keyId: "key_1", identity: { agent_id: "bot" }, users: [] })).toThrow(
    "key_1 may not act as user 'victim': it allows no user claims (a key needs --users GLOBS, or --users '*' for any user; a token, a user claim). Send a claim it allows, or none.",
  );
  expect(() =>
    verifyIdentity(claim({ user_id: "victim", sources: { user_id: { header: "X-User-ID" } } }), { keyId: "key_1", users: [] }),
  ).toThrow("key_1 may not act as user 'victim' (claimed by the X-User-ID header): it allows no user claims");
  // Absent globs mean the same: a principal must opt in to claims it cannot fix.
  expect(() => verifyIdentity(claim({ user_id: "victim" }), { keyId: "k", identity: { agent_id: "bot" } })).toThrow(
    "may not act as user 'victim'",
  );
  expect(() => verifyIdentity(claim({ agent_id: "x" }), { keyId: "k" })).toThrow("may not act as agent 'x': it fixes no agent");
  expect(verifyIdentity(claim({ user_id: "anyone" }), { keyId: "k", users: ["*"] }).attribution.user_id).toBe("anyone");
});

test("in record mode an unallowed user is kept only as asserted; the record's user is null", () => {
  const { attribution, delegation } = verifyIdentity(claim({ user_id: "victim" }), {
    keyId: "k",
    identity: { agent_id: "bot" },
    users: [],
    onMismatch: "record",
  });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: null, attribution: "verified" });
  expect(JSON.parse(delegation!)).toEqual({ asserted: { user_id: "victim" } });
});

test("task, session and parent agent the credential does not fix are kept as sent and named unverified", () => {
  const result = verifyIdentity(claim({ task_context: "t", session_id: "s", parent_agent_id: "p", trace_id: "tr" }), {
    keyId: "k",
    identity: { agent_id: "bot" },
  });
  expect(result.attribution).toMatchObject({
    task_context: "t",
    session_id: "s",
    parent_agent_id: "p",
    trace_id: "tr",
    attribution: "verified",
  });
  expect(result.unverified).toEqual(["task_context", "session_id", "parent_agent_id"]);
  expect(JSON.parse(result.delegation!)).toEqual({ unverified: ["task_context", "session_id", "parent_agent_id"] });
  const fixed = verifyIdentity(claim({ task_context: "PR #1" }), { keyId: "k", identity: { task_context: "PR #1" } });
  expect(fixed.unverified).toEqual([]);
});

test("a claim equal to the fixed value, or matching the globs, passes", () => {
  const { attribution } = verifyIdentity(claim({ agent_id: "bot", user_id: "team-a-bob" }), {
    keyId: "k",
    identity: { agent_id: "bot" },
    users: ["team-a-*", "ops"],
  });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: "team-a-bob" });
});

test("a glob is anchored: team-a-* does not admit xteam-a-bob", () => {
  expect(() => verifyIdentity(claim({ user_id: "xteam-a-bob" }), { keyId: "k", users: ["team-a-*"] })).toThrow(
    "may not act as user 'xteam-a-bob'",
  );
});

test("a fixed task (from a token) refuses a different claimed task", () => {
  expect(() => verifyIdentity(claim({ task_context: "other" }), { keyId: "sub", identity: { task_context: "PR #1" } })).toThrow(
    "sub may not act as task 'other': it is restricted to task 'PR #1'. Send a claim it allows, or none.",
  );
});

test("record mode keeps every mismatched claim, and the act chain, in delegation", () => {
  const act = { sub: "orchestrator", act: { sub: "alice" } };
  const { attribution, delegation } = verifyIdentity(claim({ agent_id: "evil", user_id: "root" }), {
    keyId: "k",
    identity: { agent_id: "bot" },
    users: ["team-a-*"],
    onMismatch: "record",
    act,
  });
  expect(attribution).toMatchObject({ agent_id: "bot", user_id: null, attribution: "verified" });
  expect(JSON.parse(delegation!)).toEqual({ act, asserted: { agent_id: "evil", user_id: "root" } });
});

test("a user only in the body that the credential does not allow is kept as asserted, never refused", () => {
  for (const onMismatch of ["reject", "record"] as const) {
    const { attribution, delegation } = verifyIdentity(claim({ user_id: "sdk-user", sources: { user_id: { body: "user" } } }), {
      keyId: "k",
      identity: { agent_id: "bot" },
      users: [],
      onMismatch,
    });
    expect(attribution).toMatchObject({ agent_id: "bot", user_id: null, attribution: "verified" });
    expect(JSON.parse(delegation!)).toEqual({ asserted: { user_id: "sdk-user" } });
  }
  // One the credential allows is the call's user, as from a header.
  expect(
    verifyIdentity(claim({ user_id: "team-a-x", sources: { user_id: { body: "user" } } }), { keyId: "k", users: ["team-a-*"] }).attribution
      .user_id,
  ).toBe("team-a-x");
});
