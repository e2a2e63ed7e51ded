/**
 * Which calls get a span: the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (or the
 * plugin's `sampler` / `samplerRatio` options), decided by the official SDK samplers so a trace id
 * gets the same decision here as in the agent's own SDK. The default is the SDK's:
 * `parentbased_always_on` (a caller's decision holds; a call without one is sampled).
 */
import { ROOT_CONTEXT, SpanKind, trace, type Context } from "@opentelemetry/api";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type Sampler,
} from "@opentelemetry/sdk-trace";
import { z } from "zod";

export const samplerNames = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
export const samplerNameSchema = z.enum(samplerNames);
export type SamplerName = z.infer<typeof samplerNameSchema>;

/** The caller's span, from its `traceparent`. */
export interface RemoteParent {
  traceId: string;
  spanId: string;
  traceFlags: number;
}

export interface CallSampler {
  /** True when nothing is ever sampled (the plugin then queues nothing). */
  readonly never: boolean;
  sampled(traceId: string, parent: RemoteParent | null): boolean;
}

/**
 * The sampler a name and ratio ask for. An unknown name or a ratio outside [0, 1] is an error that
 * says what is accepted (the SDK would fall back to sampling everything, which is how a 1% setting
 * with a typo becomes a bill).
 */
export function callSampler(name: string, ratioText: string | undefined): CallSampler {
  const parsed = samplerNameSchema.safeParse(name.trim().toLowerCase());
  if (!parsed.success) {
    throw new Error(
      `OTEL_TRACES_SAMPLER is '${name}', which agent-attr does not know: use one of ${samplerNames.join(", ")} (default parentbased_always_on).`,
    );
  }
  const ratio = ratioOf(parsed.data, ratioText);
  const sampler = samplerOf(parsed.data, ratio);
  return {
    never: parsed.data === "always_off" || (parsed.data === "traceidratio" && ratio === 0),
    sampled(traceId, parent) {
      const context = parent ? contextOf(parent) : ROOT_CONTEXT;
      return sampler.shouldSample(context, traceId, "", SpanKind.CLIENT, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED;
    },
  };
}

function ratioOf(name: SamplerName, text: string | undefined): number {
  if (!name.endsWith("traceidratio")) return 1;
  if (text === undefined || text.trim() === "") return 1;
  const ratio = Number(text);
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new Error(
      `OTEL_TRACES_SAMPLER_ARG is '${text}': the ${name} sampler takes a ratio between 0 and 1 (e.g. 0.1 for one trace in ten).`,
    );
  }
  return ratio;
}

function samplerOf(name: SamplerName, ratio: number): Sampler {
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

function contextOf(parent: RemoteParent): Context {
  return trace.setSpanContext(ROOT_CONTEXT, { ...parent, isRemote: true });
}
