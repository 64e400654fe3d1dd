/**
 * Domain types of the driver layer. Drivers never see generated protobuf
 * types: the agent converts a `ComputeOp`'s instance into an
 * {@link InstanceSpec} before calling a driver (see `agent/proto-convert.ts`).
 */

import type { PortSpec, VifSpec } from "../network/types.js";

/** Every power state a hypervisor can report, as Nova names them. */
export const POWER_STATES = ["RUNNING", "PAUSED", "SHUTDOWN", "CRASHED", "SUSPENDED", "NOSTATE"] as const;

/** What the hypervisor says about a virtual machine. */
export type PowerState = (typeof POWER_STATES)[number];

/** Power states in which a virtual machine holds its memory and vCPUs. */
export const ACTIVE_POWER_STATES: ReadonlySet<PowerState> = new Set<PowerState>(["RUNNING", "PAUSED"]);

/** Whether a string is a {@link PowerState}. */
export function isPowerState(value: unknown): value is PowerState {
  return typeof value === "string" && (POWER_STATES as readonly string[]).includes(value);
}

/** Resources of a host (or needed by an instance). */
export interface Resources {
  /** Virtual (for an instance) or physical (for a host) CPUs. */
  readonly vcpus: number;
  /** Memory in MiB. */
  readonly memoryMb: number;
  /** Local disk in GiB. */
  readonly diskGb: number;
}

/** The image an instance boots from. */
export interface ImageSpec {
  /** Image id (UUID). */
  readonly id: string;
  /** Image name. */
  readonly name: string;
  /** Disk format, such as "qcow2" or "raw". */
  readonly diskFormat: string;
  /** SHA-256 of the image data, hex. */
  readonly checksum: string;
  /** Image properties (architecture, hypervisor type, …). */
  readonly properties: Readonly<Record<string, string>>;
}

/** What a guest is told about itself (the op's guest data). */
export interface GuestSpec {
  /** The guest's host name (from the server's name when it was made). */
  readonly hostname: string;
  readonly availabilityZone: string;
  /** The key pair it was made with, and the public key; "" for none. */
  readonly keyName: string;
  readonly publicKey: string;
  /** The user data as given (at most 64 KiB); empty: none. */
  readonly userData: Uint8Array;
  /** Whether the guest gets a config drive. */
  readonly configDrive: boolean;
}

/** Everything a driver needs to build a virtual machine. */
export interface InstanceSpec extends Resources {
  /** Server id (UUID); the driver's key for the virtual machine. */
  readonly id: string;
  /** Display name. */
  readonly name: string;
  /** Owning project. */
  readonly projectId: string;
  /** Image to boot from. */
  readonly image: ImageSpec;
  /** Flavor extra specs. */
  readonly extraSpecs: Readonly<Record<string, string>>;
  /** User metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Its ports as the controller sent them (ops that create or restore it on a host); none: no network. */
  readonly ports?: readonly PortSpec[];
  /**
   * Its network interfaces, in order: the taps the hypervisor creates, on
   * the bridges the network driver made ready (set by the agent after
   * plugging the ports, before the driver is called).
   */
  readonly vifs?: readonly VifSpec[];
  /** What the guest is told about itself (ops that build it on a host); its config drive, when it has one. */
  readonly guest?: GuestSpec;
}

/** One virtual machine in a {@link HostReport}. */
export interface InstanceReport {
  /** Server id. */
  readonly serverId: string;
  /** Its power state. */
  readonly powerState: PowerState;
}

/** What the hypervisor reports about the host right now. */
export interface HostReport {
  /** Free memory in MiB. */
  readonly freeMemoryMb: number;
  /** Free local disk in GiB. */
  readonly freeDiskGb: number;
  /** Every virtual machine the hypervisor knows, in any power state. */
  readonly instances: readonly InstanceReport[];
}

/**
 * What a driver can do. Callers check these before calling; a call the
 * driver cannot do throws `NotSupportedError`.
 */
export interface DriverCapabilities {
  /** `reboot({ hard: false })` asks the guest to restart (ACPI). */
  readonly softReboot: boolean;
  /** `powerOff` asks the guest to shut down before forcing it off. */
  readonly cleanShutdown: boolean;
  /**
   * Virtual machines outlive the agent process: a restarted agent finds the
   * domains it had (true for libvirt, and for the fake driver with a
   * `statePath`).
   */
  readonly persistent: boolean;
  /** `pause` / `unpause` (vCPUs stopped, memory kept). */
  readonly pause: boolean;
  /** `suspend` / `resume` (memory saved to disk, Nova's managed save). */
  readonly suspend: boolean;
  /** `snapshot` (and so shelving with an image). */
  readonly snapshot: boolean;
  /**
   * Resize and cold migration: `migrateDiskAndPowerOff`, `finishMigration`,
   * `confirmMigration`, `finishRevertMigration` (to another host or this one).
   */
  readonly coldMigration: boolean;
  /**
   * Live migration: `preLiveMigration`, `liveMigrate`, `postLiveMigration`,
   * `rollbackLiveMigration`; the driver has a `migrationUri`.
   */
  readonly liveMigration: boolean;
  /** `consoleOutput`: the guest's serial console is logged. */
  readonly consoleLog: boolean;
  /** `attachInterface` / `detachInterface` (network interfaces hot-plugged). */
  readonly interfaceHotplug: boolean;
  /** `attachVolume` / `detachVolume` / `extendVolume` / `volumes` (network block devices hot-plugged as virtio disks). */
  readonly volumeAttach: boolean;
}

/** The image data a snapshot stored (the image record itself is the controller's). */
export interface SnapshotInfo {
  /** Size of the stored data in bytes. */
  readonly sizeBytes: number;
  /** SHA-256 of the stored data, lowercase hex. */
  readonly checksum: string;
  /** Disk format of the stored data, such as "qcow2" or "raw". */
  readonly diskFormat: string;
}

/**
 * Where a volume's export is: an NBD export the compute host's hypervisor
 * opens itself, over TLS with the host's client certificate (Nova's
 * network `connection_info`; what a volume backend's export returns).
 */
export interface VolumeConnection {
  /** The volume host's storage address (an IP address or a DNS name the server's certificate names). */
  readonly host: string;
  /** Its TCP port. */
  readonly port: number;
  /** The NBD export name (the attachment id, for the file backend). */
  readonly exportName: string;
  /** Always TLS: exports admit only the certificate of the host they were made for. */
  readonly tls: true;
}

/** A volume attached to an instance, as the hypervisor has it. */
export interface AttachedVolume {
  /** The attachment it was attached as. */
  readonly attachmentId: string;
  /** Guest device name, such as "vdb". */
  readonly device: string;
  /** The export it opens. */
  readonly connection: VolumeConnection;
  /** The size the last `extendVolume` gave it, where the driver keeps that (the fake driver does). */
  readonly sizeBytes?: number;
}
