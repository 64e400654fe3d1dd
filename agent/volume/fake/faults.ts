/**
 * Fault injection for the fake volume backend, in the style of the fake
 * hypervisor driver's (agent/drivers/fake/faults.ts). Keys are backend
 * methods; each takes one fault spec or a list of them (the first whose
 * `volumeId` matches the call applies):
 *
 *   { "create": { "error": "disk gone", "code": "POOL_FULL", "failTimes": 1 },
 *     "export": [ { "volumeId": "<uuid>", "delayMs": 2000 }, { "error": "qmp timeout", "retryable": true } ] }
 */
import { DriverError } from "../../drivers/errors.js";
import { checkFaultSpec, wait } from "../../drivers/fake/faults.js";

/** Methods of the fake backend that faults can be injected into. */
export const VOLUME_FAULTABLE_METHODS = ["pools", "create", "delete", "extend", "reimage", "createSnapshot", "deleteSnapshot", "export", "unexport", "list"] as const;

/** A method faults can be injected into. */
export type VolumeFaultableMethod = (typeof VOLUME_FAULTABLE_METHODS)[number];

/** What goes wrong in one method. */
export interface VolumeFaultSpec {
  /** Only calls for this volume id (default: every call of the method). */
  readonly volumeId?: string;
  /** Fail with this message (every call, or the first `failTimes`). */
  readonly error?: string;
  /** Error code (default "<METHOD>_FAILED", e.g. "CREATE_SNAPSHOT_FAILED"). */
  readonly code?: string;
  /** Whether the injected error says retrying may succeed (default false). */
  readonly retryable?: boolean;
  /** Delay each matching call by this many milliseconds before it acts (or fails). */
  readonly delayMs?: number;
  /** Fail only the first N matching calls, then behave. */
  readonly failTimes?: number;
}

/** Faults per method. */
export type VolumeFaults = { readonly [M in VolumeFaultableMethod]?: VolumeFaultSpec | readonly VolumeFaultSpec[] };

const checkSpec = (where: string, spec: unknown): VolumeFaultSpec => checkFaultSpec<VolumeFaultSpec>(where, spec, "volumeId");

/** Checks a faults object (e.g. parsed from a `--fake-volume-faults` JSON) and returns it typed. */
export function parseVolumeFaults(value: unknown): VolumeFaults {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new TypeError("volume faults must be an object keyed by method");
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(value)) {
    if (!(VOLUME_FAULTABLE_METHODS as readonly string[]).includes(key)) {
      throw new TypeError(`volume faults: unknown method "${key}" (one of ${VOLUME_FAULTABLE_METHODS.join(", ")})`);
    }
    out[key] = Array.isArray(spec) ? spec.map((s, i) => checkSpec(`faults.${key}[${i}]`, s)) : checkSpec(`faults.${key}`, spec);
  }
  return out as VolumeFaults;
}

/** Applies configured faults and delays; counts matching calls per spec. */
export class VolumeFaultInjector {
  private readonly calls = new Map<VolumeFaultSpec, number>();

  constructor(
    private readonly faults: VolumeFaults,
    private readonly defaultDelayMs: number,
  ) {}

  private spec(method: VolumeFaultableMethod, volumeId: string | undefined): VolumeFaultSpec | undefined {
    const specs = this.faults[method];
    const list: readonly VolumeFaultSpec[] = specs === undefined ? [] : Array.isArray(specs) ? specs : [specs as VolumeFaultSpec];
    return list.find((s) => s.volumeId === undefined || s.volumeId === volumeId);
  }

  /** Waits the call's delay (its spec's, else the default for calls that change something), then fails it if it is one that fails. */
  async apply(method: VolumeFaultableMethod, mutating: boolean, volumeId?: string): Promise<void> {
    const spec = this.spec(method, volumeId);
    await wait(spec?.delayMs ?? (mutating ? this.defaultDelayMs : 0), undefined);
    if (spec === undefined || (spec.error === undefined && spec.failTimes === undefined)) return;
    const n = (this.calls.get(spec) ?? 0) + 1;
    this.calls.set(spec, n);
    if (spec.failTimes !== undefined && n > spec.failTimes) return;
    const code = spec.code ?? `${method.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}_FAILED`;
    throw new DriverError(code, spec.error ?? `injected ${method} fault`, { retryable: spec.retryable ?? false });
  }
}
