/**
 * Quotas (Nova's unified limits): what a project may hold, and the rule
 * that a request fits. Usage is counted from what the project holds
 * (store/quotas.ts), never kept as a separate tally that could drift.
 */

/** The resources with a limit, in the order the API lists them. */
export const QUOTA_RESOURCES = [
  "instances",
  "cores",
  "ram",
  "server_groups",
  "server_group_members",
  "key_pairs",
  "metadata_items",
  "volumes",
  "snapshots",
  "gigabytes",
  "ports",
] as const;

export type QuotaResource = (typeof QUOTA_RESOURCES)[number];

export function isQuotaResource(s: string): s is QuotaResource {
  return (QUOTA_RESOURCES as readonly string[]).includes(s);
}

/** Metadata items a server may have whatever its quota (its metadata rides on every op and change event). */
export const MAX_SERVER_METADATA_ITEMS = 1024;

/** No limit. */
export const UNLIMITED = -1;

/** The defaults a new cloud starts with: Nova's, Cinder's and Neutron's. */
export const BUILT_IN_DEFAULTS: Readonly<Record<QuotaResource, number>> = {
  instances: 10,
  cores: 20,
  ram: 51200,
  server_groups: 10,
  server_group_members: 10,
  key_pairs: 100,
  metadata_items: 128,
  volumes: 10,
  snapshots: 10,
  gigabytes: 1000,
  ports: 50,
};

/** What a project holds of one resource. */
export interface Usage {
  /** Made. */
  readonly inUse: number;
  /** Being made (builds, unshelves, a resize's larger flavor, volumes being created). */
  readonly reserved: number;
}

/** A project's limits, and which of them are its own. */
export interface ProjectLimits {
  readonly limits: Readonly<Record<QuotaResource, number>>;
  readonly own: ReadonlySet<QuotaResource>;
}

/** How much of each resource a request takes (absent or 0: none). */
export type QuotaRequest = Partial<Record<QuotaResource, number>>;

/** A resource the request would take past its limit. */
export interface QuotaExcess {
  readonly resource: QuotaResource;
  readonly limit: number;
  /** In use plus reserved. */
  readonly used: number;
  readonly requested: number;
}

/**
 * The resources `request` would take past their limits, given what is used
 * now. Only what the request adds is checked: a project already over a
 * lowered limit may still free resources or make a change that takes none.
 */
export function excesses(limits: Readonly<Record<QuotaResource, number>>, usage: Partial<Record<QuotaResource, Usage>>, request: QuotaRequest): QuotaExcess[] {
  const out: QuotaExcess[] = [];
  for (const resource of QUOTA_RESOURCES) {
    const requested = request[resource] ?? 0;
    if (requested <= 0) continue;
    const limit = limits[resource];
    if (limit === UNLIMITED) continue;
    const u = usage[resource];
    if (!u) throw new Error(`usage of ${resource} was not counted`);
    const used = u.inUse + u.reserved;
    if (used + requested > limit) out.push({ resource, limit, used, requested });
  }
  return out;
}

/** The limits of a project: the defaults, with its own over them. */
export function mergeLimits(defaults: Readonly<Partial<Record<QuotaResource, number>>>, own: Readonly<Partial<Record<QuotaResource, number>>>): ProjectLimits {
  const limits = {} as Record<QuotaResource, number>;
  for (const r of QUOTA_RESOURCES) limits[r] = own[r] ?? defaults[r] ?? BUILT_IN_DEFAULTS[r];
  return { limits, own: new Set(QUOTA_RESOURCES.filter((r) => own[r] !== undefined)) };
}

/** The sizes that count against cores and ram. */
export interface FlavorSize {
  readonly vcpus: number;
  readonly ramMb: number;
}

/** What a resize from `old` to `next` asks of the quota (growth only). */
export function resizeRequest(old: FlavorSize, next: FlavorSize): QuotaRequest {
  return { cores: Math.max(0, next.vcpus - old.vcpus), ram: Math.max(0, next.ramMb - old.ramMb) };
}

/** The message of a refusal. */
export function excessMessage(projectId: string, e: readonly QuotaExcess[]): string {
  const parts = e.map((x) => `${x.resource}: requested ${x.requested}, ${x.used} of ${x.limit} used`);
  return `quota exceeded for project ${projectId}: ${parts.join("; ")}`;
}
