/**
 * Fault injection for the fake driver, configured per method (Nomad's mock
 * driver style): `{ spawn: { error: "no bridge", retryable: true, failTimes: 2 } }`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { DriverError, throwIfAborted } from "../errors.js";

/** Methods of the fake driver that faults can be injected into. */
export const FAULTABLE_METHODS = [
  "init",
  "report",
  "spawn",
  "destroy",
  "powerOn",
  "powerOff",
  "reboot",
  "powerState",
] as const;

/** A method faults can be injected into. */
export type FaultableMethod = (typeof FAULTABLE_METHODS)[number];

/** What goes wrong in one method. */
export interface FaultSpec {
  /**
   * Fail with this message. Without `failTimes`, every call fails; with it,
   * the first `failTimes` calls do.
   */
  readonly error?: string;
  /** Error code (default: "<METHOD>_FAILED", e.g. "SPAWN_FAILED"). */
  readonly code?: string;
  /** Whether the injected error says retrying may succeed (default false). */
  readonly retryable?: boolean;
  /** Delay every call by this many milliseconds before it acts (or fails). */
  readonly delayMs?: number;
  /** Fail only the first N calls, then behave (default: fail every call). */
  readonly failTimes?: number;
}

/** Faults per method. */
export type Faults = { readonly [M in FaultableMethod]?: FaultSpec };

/** Checks a `--fake-faults` style object and returns it typed. */
export function parseFaults(value: unknown): Faults {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError("faults must be an object keyed by method");
  }
  for (const [method, spec] of Object.entries(value)) {
    if (!(FAULTABLE_METHODS as readonly string[]).includes(method)) {
      throw new TypeError(`faults: unknown method "${method}" (one of ${FAULTABLE_METHODS.join(", ")})`);
    }
    if (spec === null || typeof spec !== "object") throw new TypeError(`faults.${method} must be an object`);
    const s = spec as Record<string, unknown>;
    for (const key of ["delayMs", "failTimes"]) {
      if (s[key] !== undefined && (typeof s[key] !== "number" || (s[key] as number) < 0)) {
        throw new TypeError(`faults.${method}.${key} must be a non-negative number`);
      }
    }
  }
  return value as Faults;
}

function defaultCode(method: FaultableMethod): string {
  return `${method.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}_FAILED`;
}

/** Applies configured faults and delays; counts calls per method. */
export class FaultInjector {
  private readonly calls = new Map<FaultableMethod, number>();

  constructor(
    private readonly faults: Faults,
    private readonly defaultDelayMs: number,
  ) {}

  /**
   * Waits the configured delay, then throws the configured error if this
   * call is one that fails. `mutating` calls get the driver-wide delay.
   */
  async apply(method: FaultableMethod, mutating: boolean, signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal);
    const spec = this.faults[method];
    const n = (this.calls.get(method) ?? 0) + 1;
    this.calls.set(method, n);
    const delayMs = spec?.delayMs ?? (mutating ? this.defaultDelayMs : 0);
    if (delayMs > 0) {
      try {
        await sleep(delayMs, undefined, { signal });
      } catch (err) {
        throw DriverError.from(err);
      }
    }
    if (spec === undefined || (spec.error === undefined && spec.failTimes === undefined)) return;
    if (spec.failTimes !== undefined && n > spec.failTimes) return;
    throw new DriverError(spec.code ?? defaultCode(method), spec.error ?? `injected ${method} fault`, {
      retryable: spec.retryable ?? false,
    });
  }
}
