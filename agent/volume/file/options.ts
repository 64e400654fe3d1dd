/** Options of the file volume backend. */
import type { Logger } from "pino";
import type { FilePoolConfig } from "./file-pool.js";

export interface FileVolumeBackendOptions {
  /** The pools: directories of qcow2 files. */
  readonly pools: readonly FilePoolConfig[];
  /**
   * Directory of the export daemons' files (pid files, QMP sockets, export
   * records); short, since a unix socket path is at most 107 bytes. Kept
   * across agent restarts.
   */
  readonly stateDir: string;
  /** How compute hosts reach the exports. */
  readonly exports: {
    /** The volume host's storage address, listened on and handed to compute hosts. */
    readonly address: string;
    /** Ports for the export daemons, one per exported volume: [first, last]. */
    readonly ports: readonly [number, number];
    /**
     * qemu's x509 server directory: `ca-cert.pem` (the CA compute hosts'
     * certificates chain to), `server-cert.pem` and `server-key.pem` (this
     * volume host's certificate, naming `address`).
     */
    readonly tlsDir: string;
  };
  /** qemu-img (default "qemu-img"). */
  readonly qemuImg?: string;
  /** qemu-storage-daemon (default "qemu-storage-daemon"). */
  readonly qemuStorageDaemon?: string;
  /** Time a quick command or QMP call may take, milliseconds (default 30000). */
  readonly commandTimeoutMs?: number;
  /** Time a copy (image or snapshot to volume) may take, milliseconds (default one hour). */
  readonly copyTimeoutMs?: number;
  /** Where the backend logs what it repaired or could not do and carried on without. */
  readonly logger?: Logger;
}
