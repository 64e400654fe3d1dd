import { computeFilter } from "./filters/compute.js";
import { diskFilter } from "./filters/disk.js";
import { ramFilter } from "./filters/ram.js";
import { retryFilter } from "./filters/retry.js";
import { vcpuFilter } from "./filters/vcpu.js";
import type { HostFilter, HostState, HostWeigher, RequestSpec } from "./types.js";
import { ramWeigher } from "./weighers/ram.js";

/** The outcome of a placement: hosts best first, and why the others were removed. */
export interface Placement {
  /** Hosts that passed every filter, best first. */
  readonly candidates: readonly HostState[];
  /** How many hosts were considered. */
  readonly considered: number;
  /** How many hosts each filter removed, by filter name (first failing filter counts). */
  readonly rejections: Readonly<Record<string, number>>;
}

/**
 * Filter → weigh. Pure and in memory: the scheduler proposes, the store's
 * atomic claim commits (and re-checks against fresh state).
 */
export class Pipeline {
  private readonly filters: readonly HostFilter[];
  private readonly weighers: readonly HostWeigher[];

  constructor(opts: { filters?: readonly HostFilter[]; weighers?: readonly HostWeigher[] } = {}) {
    // 1. Filters, cheapest and most selective first; the first one a host
    //    fails is the one counted against it.
    this.filters = opts.filters ?? [retryFilter, computeFilter, ramFilter, vcpuFilter, diskFilter];
    // 2. Weighers: raw scores, normalised to 0..1 per request, times multiplier.
    this.weighers = opts.weighers ?? [ramWeigher(1.0)];
  }

  place(hosts: Iterable<HostState>, spec: RequestSpec): Placement {
    const rejections: Record<string, number> = {};
    const passed: HostState[] = [];
    let considered = 0;
    for (const host of hosts) {
      considered++;
      const failed = this.filters.find((f) => !f.check(host, spec).pass);
      if (failed) rejections[failed.name] = (rejections[failed.name] ?? 0) + 1;
      else passed.push(host);
    }
    const scores = new Map<HostState, number>(passed.map((h) => [h, 0]));
    for (const w of this.weighers) {
      const raw = passed.map((h) => w.weigh(h, spec));
      const norm = normalise(raw);
      passed.forEach((h, i) => scores.set(h, scores.get(h)! + w.multiplier * norm[i]!));
    }
    const candidates = [...passed].sort((a, b) => scores.get(b)! - scores.get(a)! || a.host.localeCompare(b.host));
    return { candidates, considered, rejections };
  }
}

/** Scales values to 0..1 (all equal → all 0), as Nova's weight normaliser. */
export function normalise(values: readonly number[]): number[] {
  if (values.length === 0) return [];
  const min = Math.min(...values);
  const max = Math.max(...values);
  if (max === min) return values.map(() => 0);
  return values.map((v) => (v - min) / (max - min));
}
