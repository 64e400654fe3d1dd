import { aggregateExtraSpecsFilter } from "./filters/aggregate-extra-specs.js";
import { availabilityZoneFilter } from "./filters/availability-zone.js";
import { computeFilter } from "./filters/compute.js";
import { diskFilter } from "./filters/disk.js";
import { differentHostFilter, sameHostFilter } from "./filters/host-hints.js";
import { imagePropertiesFilter } from "./filters/image-properties.js";
import { numInstancesFilter } from "./filters/num-instances.js";
import { ramFilter } from "./filters/ram.js";
import { retryFilter } from "./filters/retry.js";
import { affinityFilter, antiAffinityFilter } from "./filters/server-group.js";
import { vcpuFilter } from "./filters/vcpu.js";
import type { HostState } from "../domain/placement.js";
import { shuffled, zoneOf, type HostFilter, type HostWeigher, type RequestSpec } from "./types.js";
import { buildFailureWeigher } from "./weighers/build-failure.js";
import { diskWeigher } from "./weighers/disk.js";
import { numInstancesWeigher } from "./weighers/num-instances.js";
import { ramWeigher } from "./weighers/ram.js";
import { softAffinityWeigher, softAntiAffinityWeigher } from "./weighers/server-group.js";
import { vcpuWeigher } from "./weighers/vcpu.js";

/**
 * How hosts that pass the filters are ordered:
 * - `filter-weigh` (default): by the weighers' normalised, multiplied sum;
 * - `least-loaded`: fewest vCPUs in use first (Nova's old SimpleScheduler);
 * - `chance`: at random (Nova's ChanceScheduler);
 * - `zone`: at random within the requested zone, or the default zone when
 *   none is requested (Nova's old ZoneScheduler).
 */
export const ALGORITHMS = ["filter-weigh", "least-loaded", "chance", "zone"] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

/** Weigher multipliers (Nova's `*_weight_multiplier`). */
export interface WeigherMultipliers {
  readonly ram: number;
  readonly vcpu: number;
  readonly disk: number;
  readonly softAffinity: number;
  readonly softAntiAffinity: number;
  readonly buildFailure: number;
  readonly numInstances: number;
}

/** Options of a {@link Pipeline}; every field has a default. */
export interface PipelineOptions {
  readonly algorithm: Algorithm;
  /** Pick the first host at random among the best N (Nova's host_subset_size), so concurrent schedulers collide less. */
  readonly hostSubsetSize: number;
  /**
   * Hosts that pass the filters scored per placement, at most (Nomad's
   * limit on scored nodes); 0 scores them all. Past it, the hosts are
   * visited from a random point of the list and the visit stops once this
   * many passed: the best of a random sample is chosen, and filtering and
   * scoring cost the same in a cloud of 100 hosts or of 10,000. Only with the
   * filter-weigh and chance algorithms; a request of a server group or with
   * same_host / different_host hints scores every host (where its group is
   * matters), and so does a dry run.
   */
  readonly maxScoredHosts: number;
  /** Nova's max_instances_per_host; 0 leaves the num_instances filter out (Nova's default). */
  readonly maxInstancesPerHost: number;
  /** Zone the `zone` algorithm uses when the request names none. */
  readonly defaultZone: string;
  readonly multipliers: WeigherMultipliers;
  /** Replaces the default filter list. */
  readonly filters?: readonly HostFilter[];
  /** Replaces the default weigher list. */
  readonly weighers?: readonly HostWeigher[];
  /** Random numbers in [0, 1) (tests make it deterministic). */
  readonly random: () => number;
}

export const DEFAULT_MULTIPLIERS: WeigherMultipliers = {
  ram: 1.0,
  vcpu: 1.0,
  disk: 1.0,
  softAffinity: 1.0,
  softAntiAffinity: 1.0,
  buildFailure: 1_000_000,
  numInstances: 0.0,
};

const DEFAULTS: PipelineOptions = {
  algorithm: "filter-weigh",
  hostSubsetSize: 1,
  maxScoredHosts: 0,
  maxInstancesPerHost: 0,
  defaultZone: "nova",
  multipliers: DEFAULT_MULTIPLIERS,
  random: Math.random,
};

/** The outcome of a placement: hosts best first, and why the others were removed. */
export interface Placement {
  /** Hosts that passed every filter, best first (the first is the choice, the rest alternates). */
  readonly candidates: readonly HostState[];
  /** How many hosts were considered (all of them, unless a sample passed enough: see maxScoredHosts). */
  readonly considered: number;
  /** How many of the considered hosts each filter removed, by filter name (first failing filter counts). */
  readonly rejections: Readonly<Record<string, number>>;
}

/** One host in an {@link Explanation}. */
export interface HostExplanation {
  readonly host: string;
  /** Every filter's verdict on the host, in pipeline order. */
  readonly filters: readonly { readonly filter: string; readonly pass: boolean; readonly reason: string }[];
  readonly passed: boolean;
  /** Each weigher's contribution (normalised × multiplier); empty for hosts that failed. */
  readonly weights: Readonly<Record<string, number>>;
  /** Sum of the weights (filter-weigh), or the algorithm's order key. */
  readonly score: number;
  /** 1 for the host that would be chosen; 0 for hosts that failed. */
  readonly rank: number;
}

/** A dry run: every host with every filter's verdict and its weights. */
export interface Explanation {
  readonly placement: Placement;
  readonly hosts: readonly HostExplanation[];
}

/**
 * Filter → order (weigh, or the configured algorithm) → subset pick. Pure
 * and in memory: the scheduler proposes, the store's atomic claim commits
 * (and re-checks against fresh state).
 */
export class Pipeline {
  readonly options: PipelineOptions;
  private readonly filters: readonly HostFilter[];
  private readonly weighers: readonly HostWeigher[];

  constructor(opts: Partial<PipelineOptions> = {}) {
    this.options = { ...DEFAULTS, ...opts, multipliers: { ...DEFAULT_MULTIPLIERS, ...opts.multipliers } };
    const m = this.options.multipliers;
    // 1. Filters, cheapest and most selective first; the first one a host
    //    fails is the one counted against it.
    this.filters = opts.filters ?? [
      retryFilter,
      computeFilter,
      availabilityZoneFilter,
      ramFilter,
      vcpuFilter,
      diskFilter,
      aggregateExtraSpecsFilter,
      imagePropertiesFilter,
      affinityFilter,
      antiAffinityFilter,
      sameHostFilter,
      differentHostFilter,
      ...(this.options.maxInstancesPerHost > 0 ? [numInstancesFilter(this.options.maxInstancesPerHost)] : []),
    ];
    // 2. Weighers: raw scores, normalised to 0..1 per request, times multiplier.
    this.weighers = opts.weighers ?? [
      ramWeigher(m.ram),
      vcpuWeigher(m.vcpu),
      diskWeigher(m.disk),
      softAffinityWeigher(m.softAffinity),
      softAntiAffinityWeigher(m.softAntiAffinity),
      buildFailureWeigher(m.buildFailure),
      numInstancesWeigher(m.numInstances),
    ].filter((w) => w.multiplier !== 0);
  }

  /** `scoreAll`: every host is scored whatever maxScoredHosts says (a last try after claims on a sample were all lost). */
  place(hosts: Iterable<HostState>, spec: RequestSpec, o: { scoreAll?: boolean } = {}): Placement {
    return this.run(hosts, spec, false, o.scoreAll ?? false).placement;
  }

  /** The dry run behind ExplainPlacement: nothing is claimed. */
  explain(hosts: Iterable<HostState>, spec: RequestSpec): Explanation {
    return this.run(hosts, spec, true);
  }

  private run(hosts: Iterable<HostState>, spec: RequestSpec, explain: boolean, scoreAll = false): Explanation {
    const rejections: Record<string, number> = {};
    const passed: HostState[] = [];
    const verdicts = new Map<HostState, HostExplanation["filters"]>();
    const list = Array.isArray(hosts) ? (hosts as readonly HostState[]) : [...hosts];
    const limit = this.scoreLimit(list.length, spec, explain || scoreAll);
    const start = limit ? Math.floor(this.options.random() * list.length) : 0;
    let considered = 0;
    for (let k = 0; k < list.length; k++) {
      if (limit && passed.length >= limit) break;
      const host = list[(start + k) % list.length]!;
      considered++;
      let failed: string | undefined;
      const all: { filter: string; pass: boolean; reason: string }[] = [];
      for (const f of this.filters) {
        if (failed && !explain) break;
        const r = f.check(host, spec);
        if (explain) all.push({ filter: f.name, pass: r.pass, reason: r.pass ? "" : r.reason });
        if (!r.pass && !failed) failed = f.name;
      }
      if (failed) rejections[failed] = (rejections[failed] ?? 0) + 1;
      else passed.push(host);
      if (explain) verdicts.set(host, all);
    }
    const { ordered, weights, scores, outOfZone } = this.order(passed, spec);
    // The zone algorithm's own cut counts like a filter's.
    if (outOfZone) rejections.zone = (rejections.zone ?? 0) + outOfZone;
    const candidates = this.subsetPick(ordered);
    const placement = { candidates, considered, rejections };
    if (!explain) return { placement, hosts: [] };
    const rank = new Map(candidates.map((h, i) => [h, i + 1]));
    const out: HostExplanation[] = [...verdicts.entries()].map(([h, filters]) => ({
      host: h.host,
      filters,
      passed: rank.has(h),
      weights: weights.get(h) ?? {},
      score: scores.get(h) ?? 0,
      rank: rank.get(h) ?? 0,
    }));
    out.sort((a, b) => (a.rank || Infinity) - (b.rank || Infinity) || a.host.localeCompare(b.host));
    return { placement, hosts: out };
  }

  /** How many passing hosts end the visit (0: none, every host is visited); see maxScoredHosts. */
  private scoreLimit(hosts: number, spec: RequestSpec, everyHost: boolean): number {
    const limit = this.options.maxScoredHosts;
    if (everyHost || limit <= 0 || hosts <= limit) return 0;
    if (spec.group || spec.sameHost || spec.differentHost) return 0;
    // The least loaded host, and the zone algorithm's default zone, are a question about every host.
    const a = this.options.algorithm;
    return a === "filter-weigh" || a === "chance" ? limit : 0;
  }

  /** Orders the hosts that passed, best first, by the configured algorithm. */
  private order(passed: HostState[], spec: RequestSpec): { ordered: HostState[]; weights: Map<HostState, Record<string, number>>; scores: Map<HostState, number>; outOfZone?: number } {
    const weights = new Map<HostState, Record<string, number>>();
    const scores = new Map<HostState, number>();
    const byName = (a: HostState, b: HostState) => a.host.localeCompare(b.host);
    switch (this.options.algorithm) {
      case "least-loaded": {
        for (const h of passed) scores.set(h, -h.vcpusUsed);
        const ordered = [...passed].sort((a, b) => a.vcpusUsed - b.vcpusUsed || a.memoryMbUsed - b.memoryMbUsed || byName(a, b));
        return { ordered, weights, scores };
      }
      case "zone": {
        const zone = spec.availabilityZone || this.options.defaultZone;
        const inZone = passed.filter((h) => zoneOf(h) === zone);
        return { ordered: shuffled(inZone, this.options.random), weights, scores, outOfZone: passed.length - inZone.length };
      }
      case "chance":
        return { ordered: shuffled(passed, this.options.random), weights, scores };
      case "filter-weigh": {
        for (const h of passed) {
          weights.set(h, {});
          scores.set(h, 0);
        }
        for (const w of this.weighers) {
          const norm = normalise(passed.map((h) => w.weigh(h, spec)));
          passed.forEach((h, i) => {
            const v = w.multiplier * norm[i]!;
            weights.get(h)![w.name] = v;
            scores.set(h, scores.get(h)! + v);
          });
        }
        const ordered = [...passed].sort((a, b) => scores.get(b)! - scores.get(a)! || byName(a, b));
        return { ordered, weights, scores };
      }
    }
  }

  /** The first host at random among the best `hostSubsetSize`; the others keep their order as alternates. */
  private subsetPick(ordered: HostState[]): HostState[] {
    const n = Math.min(Math.max(1, Math.floor(this.options.hostSubsetSize)), ordered.length);
    if (n <= 1) return ordered;
    const i = Math.floor(this.options.random() * n);
    return [ordered[i]!, ...ordered.slice(0, i), ...ordered.slice(i + 1)];
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
