/**
 * The options the {@link Driver}'s methods take, and the defaults they
 * fall back on (driver.ts re-exports all of them).
 */
import type { VifSpec } from "../network/types.js";
import type { AttachedVolume, InstanceSpec, VolumeConnection } from "./types.js";
/**
 * Seconds a clean shutdown may take before the virtual machine is forced
 * off, when the caller says 0 (Nova's `shutdown_timeout`).
 */
export const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 60;

/**
 * Seconds a guest has to restart after a soft reboot request, when the
 * caller says 0 (Nova's `[libvirt] wait_soft_reboot_seconds`).
 */
export const DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS = 120;

/** Per-call options every driver method accepts. */
export interface CallOptions {
  /**
   * Aborts the call; it then rejects with a retryable "ABORTED" DriverError
   * (non-retryable for `liveMigrate`, where an abort is a cancellation).
   */
  readonly signal?: AbortSignal;
  /**
   * The op this call executes, for logs and audit trails (the fake driver
   * records it in its call log). Drivers must not change behaviour on it.
   */
  readonly opId?: string;
}

/** The volume a server boots from (Nova's boot from volume). */
export interface RootVolume {
  /** Its attachment (as for {@link AttachVolumeOptions.attachmentId}). */
  readonly attachmentId: string;
  /** Its export, made for this host. */
  readonly connection: VolumeConnection;
}

/** Options of {@link Driver.spawn}. */
export interface SpawnOptions {
  /** The instance to create and start. */
  readonly instance: InstanceSpec;
  /**
   * Boot from this volume (`capabilities.volumeAttach`, else NOT_SUPPORTED):
   * the root disk vda is the volume's export, opened as an attached
   * volume's is and listed by `volumes()`, instead of a disk made from the
   * image; the image still gives the kernel, ramdisk and command line of a
   * direct kernel boot. Destroy leaves the volume alone.
   */
  readonly rootVolume?: RootVolume;
  /**
   * Its other attached volumes (an unshelved or evacuated server's), in the
   * domain from the start as hot-plugged ones would be, each at its export
   * for this host (`capabilities.volumeAttach`, else NOT_SUPPORTED).
   */
  readonly volumes?: readonly AttachedVolume[];
}

/** Options of calls that name one instance. */
export interface InstanceOptions {
  /** Server id. */
  readonly instanceId: string;
}

/** Options of {@link Driver.attachInterface}. */
export interface InterfaceOptions extends InstanceOptions {
  /** The interface: its tap, bridge, MAC and MTU (from the network driver's plug). */
  readonly vif: VifSpec;
}

/** Options of {@link Driver.attachVolume}. */
export interface AttachVolumeOptions extends InstanceOptions {
  /** The attachment (letters, digits, "_" and "-", 1–64 characters; UUIDs fit): the key of detach and of a repeated attach. */
  readonly attachmentId: string;
  /** The volume's export. */
  readonly connection: VolumeConnection;
  /** Device the caller would like ("vdb", …), used when free; default: the first free one. */
  readonly device?: string;
}

/** Options of {@link Driver.detachVolume}. */
export interface DetachVolumeOptions extends InstanceOptions {
  /** The attachment to remove. */
  readonly attachmentId: string;
}

/** Options of {@link Driver.holdVolume}. */
export interface HoldVolumeOptions extends InstanceOptions {
  /** The attachment whose volume its volume host is about to serve again. */
  readonly attachmentId: string;
}

/** Options of {@link Driver.extendVolume}. */
export interface ExtendVolumeOptions extends InstanceOptions {
  /** The attachment whose volume grew. */
  readonly attachmentId: string;
  /** The volume's new size in bytes (as its volume host now serves it). */
  readonly sizeBytes: number;
}

/** Options of {@link Driver.powerOff}. */
export interface PowerOffOptions extends InstanceOptions {
  /** Seconds to wait for a clean shutdown before forcing it (0: driver default). */
  readonly timeoutSeconds: number;
}

/** Options of {@link Driver.reboot}. */
export interface RebootOptions extends InstanceOptions {
  /** Power cycle (true) instead of asking the guest (false). */
  readonly hard: boolean;
  /**
   * Soft only: seconds the guest has to restart (may be fractional; 0 or
   * absent: {@link DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS}).
   */
  readonly timeoutSeconds?: number;
}

/** Options of {@link Driver.snapshot}. */
export interface SnapshotOptions extends InstanceOptions {
  /** Id of the image record (created by the controller) the data is stored in. */
  readonly imageId: string;
  /** Its name. */
  readonly imageName: string;
  /** Called once the disk is captured and its data starts going to the image store. */
  readonly onUploading?: () => void;
}

/** Options of {@link Driver.rebuild}. */
export interface RebuildOptions {
  /** The instance as it is to be rebuilt: same id, possibly a new image. */
  readonly instance: InstanceSpec;
  /** Called once the old disk is gone and the instance is being created from the image. */
  readonly onSpawning?: () => void;
  /**
   * It boots from this volume, which its volume host has just re-imaged:
   * no local disk is made; the domain is defined again (the new image's
   * kernel, ramdisk and command line for a direct kernel boot) with its
   * root disk opening this export and with `volumes` attached, and started.
   */
  readonly rootVolume?: RootVolume;
  /** With rootVolume: its other attached volumes, each at its export for this host. */
  readonly volumes?: readonly AttachedVolume[];
}

/** Options of {@link Driver.migrateDiskAndPowerOff}. */
export interface MigrateDiskOptions extends InstanceOptions {
  /** Host receiving the instance (may be this host, for a resize in place). */
  readonly targetHost: string;
  /** Seconds to wait for a clean shutdown before forcing it (0: {@link DEFAULT_SHUTDOWN_TIMEOUT_SECONDS}). */
  readonly timeoutSeconds: number;
  /**
   * It boots from a volume: there is no local root disk to hand over (its
   * volumes are exported to the target; nothing is copied). The copy kept
   * here for a revert keeps its volume disks as they are.
   */
  readonly bootsFromVolume?: boolean;
}

/** Options of {@link Driver.finishMigration}. */
export interface FinishMigrationOptions {
  /** The instance with its new flavor. */
  readonly instance: InstanceSpec;
  /** Host the instance came from. */
  readonly sourceHost: string;
  /** Start it (it was running before the move). */
  readonly powerOn: boolean;
  /** As {@link SpawnOptions.rootVolume}: it boots from this volume, opened at its export for this host; no disk was handed over. */
  readonly rootVolume?: RootVolume;
  /** Its other attached volumes, each at its export made for this host. */
  readonly volumes?: readonly AttachedVolume[];
}

/** Options of {@link Driver.finishRevertMigration}. */
export interface FinishRevertMigrationOptions extends InstanceOptions {
  /** Start it (it was running before the move). */
  readonly powerOn: boolean;
}

/** Options of {@link Driver.preLiveMigration}. */
export interface PreLiveMigrationOptions {
  /** The instance that is coming. */
  readonly instance: InstanceSpec;
  /** Host it comes from. */
  readonly sourceHost: string;
  /** It boots from a volume (which comes with the migration): no local root disk is made for it. */
  readonly bootsFromVolume?: boolean;
}

/** Options of {@link Driver.consoleOutput}. */
export interface ConsoleOutputOptions extends InstanceOptions {
  /** Return at most this many bytes from the end of the log. */
  readonly maxBytes: number;
}

/** An attached volume during a live migration: its attachment, and the export the target host opens. */
export interface MigratingVolume {
  readonly attachmentId: string;
  readonly export: { readonly host: string; readonly port: number; readonly exportName: string };
}

/** Options of {@link Driver.liveMigrate}. */
export interface LiveMigrateOptions extends InstanceOptions {
  /** Host receiving the instance. */
  readonly targetHost: string;
  /** The target's {@link Driver.migrationUri}, as its agent announced it. */
  readonly targetUri: string;
  /**
   * Where the target opens each attached volume: an export of the volume
   * made for the target host. Every volume disk of the instance must have
   * one (the driver refuses before migrating otherwise); volumes are never
   * copied, only the instance's local disks are. Entries for attachments
   * the instance does not have are not used.
   */
  readonly volumes: readonly MigratingVolume[];
  /**
   * Called as the migration advances: percent done (0–100, not
   * decreasing) and what is happening. Must not throw.
   */
  readonly onProgress?: (percent: number, message: string) => void;
}

/** Options of {@link Driver.postLiveMigration}. */
export interface PostLiveMigrationOptions extends InstanceOptions {
  /** Host the instance came from. */
  readonly sourceHost: string;
}
