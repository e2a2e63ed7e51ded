// The bound on access_denied events: one event per window, a bounded number of groups in it.
import { expect, test } from "bun:test";
import type { ChainEvent } from "../../src/trail/chain.ts";
import { AccessDenials } from "../../src/server/access-denials.ts";
import type { AccessRefusal } from "../../src/server/roles.ts";

const refusal: AccessRefusal = {
  method: "GET",
  route: "/audit/records",
  status: 401,
  reason: "no_token",
  required_role: "auditor",
  presented_role: null,
};

test("refusals within a window are one event; a later window is another; distinct groups beyond the bound only count", async () => {
  const recorded: ChainEvent[] = [];
  const denials = new AccessDenials(
    async (event) => void recorded.push(event),
    () => {},
    { windowMs: 50, maxGroups: 3 },
  );
  for (let i = 0; i < 1000; i++) denials.note(refusal, `10.0.${i % 250}.${i % 7}`);
  await Bun.sleep(120);
  expect(recorded).toHaveLength(1);
  const first = recorded[0]!.details as { refusals: number; groups: { count: number }[]; other_refusals: number };
  expect(first.refusals).toBe(1000);
  expect(first.groups).toHaveLength(3);
  expect(first.groups.reduce((sum, g) => sum + g.count, 0) + first.other_refusals).toBe(1000);
  denials.note(refusal, "10.0.0.1");
  await denials.flush();
  expect(recorded).toHaveLength(2);
  expect(recorded[1]!.details).toMatchObject({ refusals: 1, other_refusals: 0 });
  await denials.flush(); // nothing new: no event
  expect(recorded).toHaveLength(2);
});

test("refusals whose event cannot be written are kept for the next attempt, and the failure is reported", async () => {
  const recorded: ChainEvent[] = [];
  const errors: string[] = [];
  let failing = true;
  const denials = new AccessDenials(
    async (event) => {
      if (failing) throw new Error("database is locked");
      recorded.push(event);
    },
    (message) => errors.push(message),
    { windowMs: 60_000, maxGroups: 10 },
  );
  denials.note(refusal, "10.0.0.1");
  await denials.flush();
  expect(errors).toEqual(["cannot record 1 refused audit API call(s) in the trail (kept for the next attempt): database is locked"]);
  failing = false;
  denials.note(refusal, "10.0.0.1");
  await denials.flush();
  expect(recorded).toHaveLength(1);
  expect(recorded[0]!.details).toMatchObject({ refusals: 2, groups: [{ client: "10.0.0.1", count: 2 }] });
});
