/**
 * Fault injection for the fake driver (Nomad's mock driver style), as the
 * `--fake-faults` JSON. Keys are driver methods; each takes one fault spec
 * or a list of them (the first whose `serverId` matches the call applies):
 *
 *   { "spawn":       { "error": "no bridge", "retryable": true, "failTimes": 2 },
 *     "liveMigrate": [ { "serverId": "<uuid>", "delayMs": 2000 },
 *                      { "error": "connection reset", "code": "MIGRATION_FAILED" } ],
 *     "ignoreAcpi":  ["<uuid>"] }
 *
 * `ignoreAcpi` (true: every guest; or a list of server ids) makes guests
 * ignore shutdown and reboot requests: a soft reboot then times out with
 * "SOFT_REBOOT_TIMEOUT", a power off (also in `migrateDiskAndPowerOff`)
 * waits its timeout and forces the instance off.
 *
 * An op that makes several driver calls (agent/ops/handlers.ts says which)
 * meets the faults of each of them; `migrateDisk` is accepted as an alias
 * of `migrateDiskAndPowerOff`.
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
  "consoleOutput",
  "pause",
  "unpause",
  "suspend",
  "resume",
  "snapshot",
  "rebuild",
  "migrateDiskAndPowerOff",
  "finishMigration",
  "confirmMigration",
  "finishRevertMigration",
  "preLiveMigration",
  "liveMigrate",
  "postLiveMigration",
  "rollbackLiveMigration",
  "attachInterface",
  "detachInterface",
  "attachVolume",
  "detachVolume",
  "extendVolume",
  "holdVolume",
] as const;

/** A method faults can be injected into. */
export type FaultableMethod = (typeof FAULTABLE_METHODS)[number];

/** Keys accepted for a method under another name (the op kind). */
const METHOD_ALIASES: Readonly<Record<string, FaultableMethod>> = { migrateDisk: "migrateDiskAndPowerOff" };

/** What goes wrong in one method. */
export interface FaultSpec {
  /** Only calls for this server id (default: every call of the method). */
  readonly serverId?: string;
  /**
   * Fail with this message. Without `failTimes`, every call fails; with it,
   * the first `failTimes` calls do.
   */
  readonly error?: string;
  /** Error code (default: "<METHOD>_FAILED", e.g. "SPAWN_FAILED"). */
  readonly code?: string;
  /** Whether the injected error says retrying may succeed (default false). */
  readonly retryable?: boolean;
  /**
   * Delay every call by this many milliseconds before it acts (or fails),
   * instead of the driver-wide delay. `liveMigrate` waits it at each of its
   * steps (see `LIVE_MIGRATION_STEPS`) and fails, if it does, half way.
   */
  readonly delayMs?: number;
  /** Fail only the first N matching calls, then behave (default: fail every call). */
  readonly failTimes?: number;
}

/** Faults per method, plus guests that ignore ACPI. */
export type Faults = { readonly [M in FaultableMethod]?: FaultSpec | readonly FaultSpec[] } & {
  /** Guests ignore ACPI shutdown/reboot requests: all (true) or these server ids. */
  readonly ignoreAcpi?: boolean | readonly string[];
};

/**
 * Checks one fault spec of a fake (a hypervisor's or a volume backend's):
 * the target id under `idKey` ("serverId", "volumeId"), error, code,
 * retryable, delayMs, failTimes; anything else is a TypeError naming `where`.
 */
export function checkFaultSpec<T>(where: string, spec: unknown, idKey: string): T {
  const keys = [idKey, "error", "code", "retryable", "delayMs", "failTimes"];
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) throw new TypeError(`${where} must be an object`);
  const s = spec as Record<string, unknown>;
  for (const key of Object.keys(s)) {
    if (!keys.includes(key)) throw new TypeError(`${where}: unknown key "${key}" (one of ${keys.join(", ")})`);
  }
  for (const key of ["delayMs", "failTimes"]) {
    if (s[key] !== undefined && (typeof s[key] !== "number" || !Number.isFinite(s[key]) || (s[key] as number) < 0)) {
      throw new TypeError(`${where}.${key} must be a non-negative number`);
    }
  }
  for (const key of [idKey, "error", "code"]) {
    if (s[key] !== undefined && typeof s[key] !== "string") throw new TypeError(`${where}.${key} must be a string`);
  }
  if (s.retryable !== undefined && typeof s.retryable !== "boolean") throw new TypeError(`${where}.retryable must be a boolean`);
  return s as T;
}

const checkSpec = (where: string, spec: unknown): FaultSpec => checkFaultSpec<FaultSpec>(where, spec, "serverId");

/** Checks a `--fake-faults` style object and returns it typed (aliases resolved). */
export function parseFaults(value: unknown): Faults {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError("faults must be an object keyed by method");
  }
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(value)) {
    if (key === "ignoreAcpi") {
      const ok = typeof spec === "boolean" || (Array.isArray(spec) && spec.every((s) => typeof s === "string"));
      if (!ok) throw new TypeError("faults.ignoreAcpi must be true, false or a list of server ids");
      out[key] = spec;
      continue;
    }
    const method = METHOD_ALIASES[key] ?? key;
    if (!(FAULTABLE_METHODS as readonly string[]).includes(method)) {
      throw new TypeError(`faults: unknown method "${key}" (one of ${FAULTABLE_METHODS.join(", ")}, or ignoreAcpi)`);
    }
    if (out[method] !== undefined) throw new TypeError(`faults: "${method}" is given twice`);
    out[method] = Array.isArray(spec)
      ? spec.map((s, i) => checkSpec(`faults.${key}[${i}]`, s))
      : checkSpec(`faults.${key}`, spec);
  }
  return out as Faults;
}

function defaultCode(method: FaultableMethod): string {
  return `${method.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}_FAILED`;
}

/** Applies configured faults and delays; counts matching calls per spec. */
export class FaultInjector {
  private readonly calls = new Map<FaultSpec, number>();

  constructor(
    private readonly faults: Faults,
    private readonly defaultDelayMs: number,
  ) {}

  /** The spec that applies to a call of `method` for `serverId`, if any. */
  spec(method: FaultableMethod, serverId: string | undefined): FaultSpec | undefined {
    const specs = this.faults[method];
    const list: readonly FaultSpec[] = specs === undefined ? [] : Array.isArray(specs) ? specs : [specs as FaultSpec];
    return list.find((s) => s.serverId === undefined || s.serverId === serverId);
  }

  /** Milliseconds a call waits: its spec's `delayMs`, else the driver-wide delay for mutating calls. */
  delayMs(method: FaultableMethod, mutating: boolean, serverId: string | undefined): number {
    return this.spec(method, serverId)?.delayMs ?? (mutating ? this.defaultDelayMs : 0);
  }

  /** Whether the guest of `serverId` ignores ACPI shutdown and reboot requests. */
  ignoresAcpi(serverId: string): boolean {
    const v = this.faults.ignoreAcpi;
    return v === true || (Array.isArray(v) && v.includes(serverId));
  }

  /**
   * Waits the call's delay (rejecting with a retryable "ABORTED" if `signal`
   * fires), then throws the configured error if this call is one that fails.
   */
  async apply(
    method: FaultableMethod,
    mutating: boolean,
    signal: AbortSignal | undefined,
    serverId?: string,
  ): Promise<void> {
    throwIfAborted(signal);
    await wait(this.delayMs(method, mutating, serverId), signal);
    this.check(method, serverId);
  }

  /** Throws the configured error if this call of `method` is one that fails (and counts it). */
  check(method: FaultableMethod, serverId: string | undefined): void {
    const spec = this.spec(method, serverId);
    if (spec === undefined || (spec.error === undefined && spec.failTimes === undefined)) return;
    const n = (this.calls.get(spec) ?? 0) + 1;
    this.calls.set(spec, n);
    if (spec.failTimes !== undefined && n > spec.failTimes) return;
    throw new DriverError(spec.code ?? defaultCode(method), spec.error ?? `injected ${method} fault`, {
      retryable: spec.retryable ?? false,
    });
  }
}

/** Sleeps `ms`; an abort rejects with a retryable "ABORTED" DriverError. */
export async function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  throwIfAborted(signal);
  if (ms <= 0) return;
  try {
    await sleep(ms, undefined, { signal });
  } catch (err) {
    throw DriverError.from(err);
  }
}
