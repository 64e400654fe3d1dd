import type { Logger } from "pino";
import type { ImageStore } from "./image-store.js";

/** Options of the libvirt driver. */
export interface LibvirtDriverOptions {
  /** Host name (for messages and to tell a resize in place). */
  readonly hostname: string;
  /** libvirt connection URI, e.g. "qemu:///system" or "test:///abs/path/host.xml". */
  readonly uri: string;
  /** Directory of instance disks and the base image cache (Nova's `instances_path`). */
  readonly instancesPath: string;
  /** Where images come from and snapshots and migrating disks go. */
  readonly imageStore: ImageStore;
  /** Local disk for instances, GiB (default: the size of the file system of `instancesPath`). */
  readonly diskGb?: number;
  /** Memory and disk overcommit the driver itself accepts (default memory 1.5, disk 1.0). */
  readonly allocationRatio?: { readonly memoryMb: number; readonly diskGb: number };
  /** "kvm" or "qemu" (TCG); default: kvm when the hypervisor offers it, else qemu. */
  readonly domainType?: "kvm" | "qemu";
  /** Seconds a clean shutdown waits when the caller gives no timeout (Nova's `shutdown_timeout`; default 60). */
  readonly shutdownTimeoutSeconds?: number;
  /** Seconds between ACPI shutdown requests while waiting for a guest (Nova: 10). */
  readonly shutdownRetrySeconds?: number;
  /**
   * Seconds a detach of an interface from a running guest waits for the
   * guest to release it before failing with a retryable DETACH_TIMEOUT
   * (default 20; counted from the start of the call, and never less than
   * the ~5 s libvirt's qemu driver waits by itself).
   */
  readonly detachTimeoutSeconds?: number;
  /** Unused base images older than this are removed (default 3600). */
  readonly imageCacheMinAgeSeconds?: number;
  /**
   * libvirt URI other hosts' libvirtds reach this one at for live migration
   * (Nova's `live_migration_uri`), e.g. "qemu+tcp://host-b/system"; without
   * it (or on a hypervisor other than qemu) the host cannot live-migrate.
   */
  readonly liveMigrationUri?: string;
  /** Address qemu receives live migrations on (default: the host of `liveMigrationUri`). */
  readonly liveMigrationInboundAddr?: string;
  /** Milliseconds between progress polls of a running live migration (default 500). */
  readonly liveMigrationPollMs?: number;
  /** Bandwidth cap of a live migration, MiB/s (Nova's `live_migration_bandwidth`; default: none). */
  readonly liveMigrationBandwidthMiBs?: number;
  /**
   * Where the driver logs what it could not do and carried on without
   * (a failed cleanup, a lost connection); default: nowhere.
   */
  readonly logger?: Logger;
}
