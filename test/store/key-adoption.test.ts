// The rules by which an open with the signing key adopts (signs) a key row an earlier version
// wrote: only while the chain has no keys_signed event, only for a key whose key_created event is
// an earlier version's (not `signed: true`), and only when the row agrees with that event.
import { expect, test } from "bun:test";
import { adoptionPlan, type StoredKeyRow } from "../../src/store/key-signature.ts";
import { keyCreatedDetails, type ProxyKey } from "../../src/store/keys.ts";

const key = (id: string, change: Partial<ProxyKey> = {}): ProxyKey => ({
  id,
  agents: ["nightly-job"],
  users: ["ops-*"],
  tier: "pro",
  tags: { team: "platform" },
  created_at: "2026-11-01T00:00:00.000Z",
  expires_at: "2027-01-01T00:00:00.000Z",
  revoked_at: null,
  ...change,
});
const row = (k: ProxyKey, signature: string | null = null): StoredKeyRow => ({ key: k, hash: "0".repeat(64), signature });
/** A key_created event as an earlier version wrote it (no `signed`). */
const legacy = (k: ProxyKey) => {
  const { signed: _, ...details } = keyCreatedDetails(k);
  return { kind: "key_created", details: JSON.stringify(details) };
};

test("a legacy row that agrees with its key_created event is adopted; signed rows are left alone", () => {
  const plan = adoptionPlan([row(key("key_a")), row(key("key_b"), "sig")], [legacy(key("key_a")), legacy(key("key_b"))]);
  expect(plan.open).toBe(true);
  expect(plan.adopt.map((r) => r.key.id)).toEqual(["key_a"]);
  expect(plan.refused).toEqual([]);
});

test("a row that disagrees with its event in any field the event holds is refused, naming what", () => {
  const changes: [Partial<ProxyKey>, string][] = [
    [{ agents: ["*"] }, "agents"],
    [{ users: ["ops-*", "*"] }, "number of user globs"],
    [{ users: null }, "number of user globs"],
    [{ tier: "enterprise" }, "tier"],
    [{ tags: {} }, "tags"],
    [{ expires_at: null }, "expiry"],
  ];
  for (const [change, what] of changes) {
    const plan = adoptionPlan([row(key("key_a", change))], [legacy(key("key_a"))]);
    expect(plan.adopt).toEqual([]);
    expect(plan.refused).toEqual([{ id: "key_a", why: expect.stringContaining(`(${what})`) }]);
  }
});

test("no key_created event, one written signed by this version, or a keys_signed event already: refused", () => {
  const inserted = adoptionPlan([row(key("key_x"))], [legacy(key("key_a"))]);
  expect(inserted.refused[0]!.why).toContain("no key_created event");
  const fresh = adoptionPlan([row(key("key_a"))], [{ kind: "key_created", details: JSON.stringify(keyCreatedDetails(key("key_a"))) }]);
  expect(fresh.open).toBe(false);
  expect(fresh.refused[0]!.why).toContain("created signed");
  const closed = adoptionPlan([row(key("key_a"))], [legacy(key("key_a")), { kind: "keys_signed", details: "{}" }]);
  expect(closed.open).toBe(false);
  expect(closed.adopt).toEqual([]);
  expect(closed.refused[0]!.why).toContain("keys_signed event already");
});

test("a row whose revocation the chain records but which says it is not revoked is not adopted", () => {
  const plan = adoptionPlan(
    [row(key("key_a"))],
    [legacy(key("key_a")), { kind: "key_revoked", details: JSON.stringify({ key_id: "key_a" }) }],
  );
  expect(plan.refused[0]!.why).toContain("records its revocation");
  const revoked = adoptionPlan(
    [row(key("key_a", { revoked_at: "2026-11-02T00:00:00.000Z" }))],
    [legacy(key("key_a")), { kind: "key_revoked", details: JSON.stringify({ key_id: "key_a" }) }],
  );
  expect(revoked.adopt).toHaveLength(1);
});

test("events of keys kept in a database of their own (key_store) count for nothing", () => {
  const { signed: _, ...details } = keyCreatedDetails(key("key_a"));
  const plan = adoptionPlan(
    [row(key("key_a"))],
    [{ kind: "key_created", details: JSON.stringify({ ...details, key_store: "apiKeys({ path })" }) }],
  );
  expect(plan.open).toBe(false);
  expect(plan.adopt).toEqual([]);
});
