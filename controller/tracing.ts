/**
 * Traces (OpenTelemetry), off by default. `--trace otlp:<url>` exports a
 * process's spans over OTLP/HTTP (a collector's `http://host:4318/v1/traces`),
 * `--trace file:<path>` appends them to a file as JSON lines. The controller
 * and the agent alike: one trace follows a request from its gRPC call
 * through the scheduler, the outbox and NATS (the `traceparent` header of
 * the op message) to the agent and its driver, and back to the result.
 * Where work is picked up later from the database (a placement, an op's
 * result, the outbox), the trace context is stored with it (W3C
 * `traceparent`, a column of the action, op and outbox rows).
 *
 * Without `--trace` no provider is registered: spans are the API's no-ops
 * and no trace context is made or stored.
 */
import { appendFile, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace, type Attributes, type Context, type Span } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { ExportResultCode, W3CTraceContextPropagator, hrTimeToMicroseconds, type ExportResult } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { outsideLogContext } from "./log-context.js";
import { BatchSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace";

export { SpanKind };

/** The NATS header an op message carries its trace in (W3C Trace Context). */
export const TRACEPARENT_HEADER = "traceparent";

/** Where spans go. */
export type TraceTarget = { readonly kind: "otlp"; readonly url: string } | { readonly kind: "file"; readonly path: string };

/** `otlp:<http(s) url>` or `file:<path>`; anything else is an error naming `flag`. */
export function parseTraceTarget(flag: string, raw: string): TraceTarget {
  const at = raw.indexOf(":");
  const kind = raw.slice(0, at);
  const rest = raw.slice(at + 1);
  if (kind === "otlp" && /^https?:\/\/[^\s]+$/.test(rest)) return { kind, url: rest };
  if (kind === "file" && rest.length > 0) return { kind, path: rest };
  throw new Error(`${flag}: expected otlp:<http(s) URL of a collector's /v1/traces> or file:<path>, got "${raw}"`);
}

/** Spans as JSON lines, one object per span (trace_id, span_id, parent_span_id, name, kind, service, start and end in µs since the epoch, attributes, status). */
class FileSpanExporter implements SpanExporter {
  private ready: Promise<unknown>;
  constructor(private readonly path: string) {
    this.ready = mkdir(dirname(path), { recursive: true });
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const lines = spans.map((s) =>
      JSON.stringify({
        trace_id: s.spanContext().traceId,
        span_id: s.spanContext().spanId,
        parent_span_id: s.parentSpanContext?.spanId ?? "",
        name: s.name,
        kind: SpanKind[s.kind],
        service: s.resource.attributes["service.name"],
        start_us: hrTimeToMicroseconds(s.startTime),
        end_us: hrTimeToMicroseconds(s.endTime),
        attributes: s.attributes,
        status: s.status.code === SpanStatusCode.ERROR ? { error: s.status.message ?? "" } : "ok",
      }),
    );
    this.ready = this.ready
      .then(() => appendFile(this.path, `${lines.join("\n")}\n`))
      .then(
        () => done({ code: ExportResultCode.SUCCESS }),
        (error: Error) => done({ code: ExportResultCode.FAILED, error }),
      );
  }

  async shutdown(): Promise<void> {
    await this.ready;
  }

  async forceFlush(): Promise<void> {
    await this.ready;
  }
}

let provider: TracerProvider | null = null;

/**
 * Starts exporting this process's spans (once per process: a second call
 * keeps the first provider, as several controllers share one process in
 * the tests). Returns a flush for shutdown.
 */
export function startTracing(service: string, target: TraceTarget): { flush: () => Promise<void> } {
  if (!provider) {
    const exporter = target.kind === "otlp" ? new OTLPTraceExporter({ url: target.url }) : new FileSpanExporter(target.path);
    provider = new TracerProvider({
      resource: resourceFromAttributes({ "service.name": service }),
      spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 500 })],
    });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(provider);
  }
  const p = provider;
  return { flush: () => p.forceFlush() };
}

const tracer = () => trace.getTracer("novamesh");

/** The current span's context as a W3C traceparent, to store or send with work done later; null when nothing is traced. */
export function currentTraceParent(): string | null {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ?? null;
}

/** The context a stored or received traceparent continues (the root context without one). */
export function traceContextOf(traceParent: string | null | undefined): Context {
  return traceParent ? propagation.extract(ROOT_CONTEXT, { traceparent: traceParent }) : ROOT_CONTEXT;
}

/**
 * Runs `fn` in a new span `name` — a child of `parent` (default: the
 * current span) — ended when `fn` settles, with an error status if it
 * rejects.
 */
export function inSpan<T>(name: string, o: { parent?: Context; kind?: SpanKind; attributes?: Attributes }, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer().startActiveSpan(name, { kind: o.kind ?? SpanKind.INTERNAL, attributes: o.attributes ?? {} }, o.parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Runs `fn` in a span continuing the stored or received `traceParent`; without one (nothing traced), just runs it. */
export function inTrace<T>(traceParent: string | null | undefined, name: string, o: { kind?: SpanKind; attributes?: Attributes }, fn: () => Promise<T>): Promise<T> {
  if (!traceParent || !provider) return fn();
  return inSpan(name, { ...o, parent: traceContextOf(traceParent) }, fn);
}

/** Runs `fn` in a child span of the current one; outside any traced work, just runs it. */
export function inChildSpan<T>(name: string, o: { kind?: SpanKind; attributes?: Attributes }, fn: () => Promise<T>): Promise<T> {
  if (!trace.getActiveSpan()?.isRecording()) return fn();
  return inSpan(name, o, fn);
}

/**
 * Runs `fn` outside any operation: no trace, no log context. For work an
 * op may start that outlives it — a connection opened on demand, with its
 * callbacks and reconnect timers — so its later lines and spans are not
 * taken for that op's.
 */
export function detached<T>(fn: () => T): T {
  return context.with(ROOT_CONTEXT, () => outsideLogContext(fn));
}

/** Sets an attribute on the current span (none: nothing). */
export function spanAttribute(key: string, value: string | number | boolean): void {
  trace.getActiveSpan()?.setAttribute(key, value);
}
