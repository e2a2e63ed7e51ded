// OTEL_TRACES_SAMPLER: the official samplers decide which calls get a span, the way the agent's own
// SDK decides for the same trace id; a name or ratio the proxy does not know stops the start.
import { describe, expect, test } from "bun:test";
import { RandomIdGenerator } from "@opentelemetry/sdk-trace";
import { callSampler } from "../../plugins/otel/sampler.ts";

const ids = new RandomIdGenerator();
const sampledParent = (traceId: string) => ({ traceId, spanId: "00f067aa0ba902b7", traceFlags: 1 });
const quietParent = (traceId: string) => ({ traceId, spanId: "00f067aa0ba902b7", traceFlags: 0 });

describe("callSampler", () => {
  test("the default, parentbased_always_on: roots sampled, a caller's decision holds", () => {
    const sampler = callSampler("parentbased_always_on", undefined);
    const traceId = ids.generateTraceId();
    expect(sampler.sampled(traceId, null)).toBe(true);
    expect(sampler.sampled(traceId, sampledParent(traceId))).toBe(true);
    expect(sampler.sampled(traceId, quietParent(traceId))).toBe(false);
    expect(sampler.never).toBe(false);
  });

  test("always_on ignores the caller's flag; always_off samples nothing and says so", () => {
    const traceId = ids.generateTraceId();
    expect(callSampler("always_on", undefined).sampled(traceId, quietParent(traceId))).toBe(true);
    const off = callSampler("ALWAYS_OFF", undefined);
    expect(off.never).toBe(true);
    expect(off.sampled(traceId, sampledParent(traceId))).toBe(false);
  });

  test("traceidratio keeps about the ratio of traces, the same decision for the same trace id", () => {
    const sampler = callSampler("traceidratio", "0.25");
    const traces = Array.from({ length: 4000 }, () => ids.generateTraceId());
    const kept = traces.filter((t) => sampler.sampled(t, null));
    expect(kept.length).toBeGreaterThan(800);
    expect(kept.length).toBeLessThan(1200);
    for (const t of kept.slice(0, 50)) expect(sampler.sampled(t, quietParent(t))).toBe(true);
    expect(callSampler("traceidratio", "0").never).toBe(true);
  });

  test("parentbased_traceidratio: the ratio for roots, the caller's decision for children", () => {
    const sampler = callSampler("parentbased_traceidratio", "0");
    const traceId = ids.generateTraceId();
    expect(sampler.never).toBe(false);
    expect(sampler.sampled(traceId, null)).toBe(false);
    expect(sampler.sampled(traceId, sampledParent(traceId))).toBe(true);
    expect(callSampler("parentbased_always_off", undefined).sampled(traceId, sampledParent(traceId))).toBe(true);
    expect(callSampler("parentbased_always_off", undefined).sampled(traceId, null)).toBe(false);
  });

  test("an unknown sampler or a ratio outside [0, 1] is an error that says what is accepted", () => {
    expect(() => callSampler("jaeger_remote", undefined)).toThrow(/OTEL_TRACES_SAMPLER is 'jaeger_remote'.*parentbased_traceidratio/);
    expect(() => callSampler("traceidratio", "10%")).toThrow(/OTEL_TRACES_SAMPLER_ARG is '10%'.*between 0 and 1/);
    expect(() => callSampler("parentbased_traceidratio", "1.5")).toThrow(/between 0 and 1/);
  });
});
