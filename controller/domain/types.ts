import type { PowerState, TaskState, VmState } from "./states.js";

export const ROLES = ["admin", "member", "agent"] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling: resolved from the bearer token. */
export interface Principal {
  readonly tokenId: string;
  readonly projectId: string;
  readonly role: Role;
  /** For an agent token: the one host it may speak for (null: an unused enrolment token, or another role). */
  readonly host: string | null;
}

export interface Flavor {
  readonly id: string;
  readonly name: string;
  readonly vcpus: number;
  readonly ramMb: number;
  readonly diskGb: number;
  readonly description: string;
  readonly extraSpecs: Readonly<Record<string, string>>;
}

export type ImageVisibility = "private" | "public";
export type ImageStatus = "queued" | "saving" | "active" | "deleted";

export interface Image {
  readonly id: string;
  readonly name: string;
  readonly projectId: string;
  readonly status: ImageStatus;
  readonly visibility: ImageVisibility;
  readonly diskFormat: string;
  readonly containerFormat: string;
  readonly sizeBytes: number;
  readonly checksum: string;
  readonly minDiskGb: number;
  readonly minRamMb: number;
  readonly properties: Readonly<Record<string, string>>;
  /** Its bytes are in the image store (uploaded or snapshotted). */
  readonly hasData: boolean;
  readonly createdAt: Date;
}

export interface Fault {
  readonly code: string;
  readonly message: string;
  readonly details: Readonly<Record<string, string>>;
  readonly createdAt: string;
}

export interface Instance {
  /** Internal row id: the order of creation, used for paging. */
  readonly seq: number;
  readonly uuid: string;
  readonly name: string;
  readonly projectId: string;
  readonly requestId: string;
  readonly flavor: { readonly id: string; readonly name: string; readonly vcpus: number; readonly ramMb: number; readonly diskGb: number };
  readonly extraSpecs: Readonly<Record<string, string>>;
  readonly imageId: string;
  /** The availability zone asked for at create ("" for any). */
  readonly availabilityZone: string;
  /** The server group it was created in, or null. */
  readonly serverGroupId: string | null;
  /** Scheduler hints given at create: servers to share a host with, or to stay away from. */
  readonly schedulerHints: SchedulerHints;
  /** The build's next candidates after its host, best first (a retryable spawn failure claims one). */
  readonly alternateHosts: readonly string[];
  readonly host: string | null;
  readonly vmState: VmState;
  readonly taskState: TaskState | null;
  /** When the running task times out; null without a task. */
  readonly taskDeadline: Date | null;
  readonly powerState: PowerState;
  readonly fault: Fault | null;
  readonly metadata: Readonly<Record<string, string>>;
  readonly attempt: number;
  readonly triedHosts: readonly string[];
  /** Who locked it: an admin (only admins unlock) or its owner; null when unlocked. */
  readonly lockedBy: "admin" | "owner" | null;
  readonly lockedReason: string;
  /** The snapshot a shelved server unshelves from. */
  readonly shelvedImageId: string | null;
  /** Its root disk is a volume: it takes no local disk on its host. */
  readonly bootsFromVolume: boolean;
  /** The key pair it was made with, and its copy of the public key (null: none). */
  readonly keyName: string | null;
  readonly keyData: string | null;
  /** The host name its guest is given (fixed when it was made). */
  readonly hostname: string;
  /** It gets a config drive. */
  readonly configDrive: boolean;
  readonly description: string;
  /** Its tags, in the order given. */
  readonly tags: readonly string[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly launchedAt: Date | null;
  readonly deletedAt: Date | null;
}

/** A flavor as a migration records it: the instance's copy, with its extra specs (absent in records of older versions). */
export type MigrationFlavor = Instance["flavor"] & { readonly extraSpecs?: Readonly<Record<string, string>> };

/** Placement hints of a server (Nova's os:scheduler_hints same_host / different_host). */
export interface SchedulerHints {
  readonly sameHost: readonly string[];
  readonly differentHost: readonly string[];
  /**
   * Only servers of this project count (hints given by a non-admin): another
   * project's server is as one that does not exist. Absent: any server.
   */
  readonly projectId?: string;
}

export interface ComputeNode {
  readonly id: string;
  readonly host: string;
  readonly hypervisorType: string;
  readonly zone: string;
  readonly version: string;
  readonly vcpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
  readonly vcpusUsed: number;
  readonly memoryMbUsed: number;
  readonly diskGbUsed: number;
  readonly runningVms: number;
  readonly cpuAllocationRatio: number;
  readonly ramAllocationRatio: number;
  readonly diskAllocationRatio: number;
  readonly reservedMemoryMb: number;
  /** vCPUs and disk kept for the host itself (Nova's reserved_host_cpus, reserved_host_disk_mb). */
  readonly reservedVcpus: number;
  readonly reservedDiskGb: number;
  /** CPU architecture the agent reports, e.g. "x86_64" ("" when unknown). */
  readonly architecture: string;
  /** Builds that failed here since the last one that succeeded (the build failure weigher). */
  readonly failedBuilds: number;
  readonly freeMemoryMbReported: number;
  readonly freeDiskGbReported: number;
  readonly enabled: boolean;
  readonly disabledReason: string;
  readonly lastSeenAt: Date | null;
  /** URI other hosts live-migrate to (libvirt), as the agent announced it. */
  readonly migrationUri: string;
}

/** What an instance needs from a host. */
export interface ResourceRequest {
  readonly vcpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
}

export interface ActionEvent {
  readonly event: string;
  readonly host: string;
  readonly startTime: Date;
  readonly finishTime: Date | null;
  readonly result: string | null;
  readonly fault: string | null;
  readonly details: string | null;
}

export const OPERATION_STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"] as const;
export type OperationState = (typeof OPERATION_STATES)[number];

/** Why an operation failed: a gRPC status code, a machine reason and a message. */
export interface OperationError {
  /** gRPC status code number. */
  readonly code: number;
  readonly reason: string;
  readonly message: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface InstanceAction {
  readonly id: number;
  readonly instanceUuid: string;
  readonly requestId: string;
  readonly projectId: string;
  readonly action: string;
  readonly startTime: Date;
  readonly finishTime: Date | null;
  readonly message: string;
  /** The action as an Operation. */
  readonly state: OperationState;
  readonly progress: number;
  readonly progressMessage: string;
  readonly error: OperationError | null;
  readonly cancellable: boolean;
  readonly updatedAt: Date;
  readonly deadline: Date | null;
  /** The image the action made (snapshot), if any. */
  readonly imageId: string | null;
  readonly events: readonly ActionEvent[];
}

export const MIGRATION_TYPES = ["RESIZE", "MIGRATION", "LIVE_MIGRATION", "EVACUATION"] as const;
export type MigrationType = (typeof MIGRATION_TYPES)[number];
export const MIGRATION_STATUSES = [
  "PRE_MIGRATING",
  "MIGRATING",
  "FINISHED",
  "CONFIRMED",
  "REVERTED",
  "COMPLETED",
  "ERROR",
  "CANCELLED",
] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];

/** A move of an instance between hosts. Its id is also the allocation consumer of the source's capacity. */
export interface Migration {
  readonly id: string;
  readonly instanceUuid: string;
  readonly projectId: string;
  readonly actionId: number;
  readonly requestId: string;
  readonly type: MigrationType;
  readonly status: MigrationStatus;
  readonly sourceHost: string;
  readonly targetHost: string | null;
  readonly requestedHost: string | null;
  readonly oldFlavor: MigrationFlavor;
  readonly newFlavor: MigrationFlavor;
  readonly oldVmState: VmState;
  readonly triedHosts: readonly string[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/**
 * The prefix of request ids the controller makes for actions it starts
 * itself (a volume deleted with its server); callers' request ids may not
 * start with it, so theirs never collide with these.
 */
export const INTERNAL_REQUEST_PREFIX = "novamesh:";
