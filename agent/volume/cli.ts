/**
 * The agent's volume host flags: which backend serves volumes here, its
 * pools, and where compute hosts reach its exports. Without
 * --volume-backend the agent is no volume host.
 *
 *   --volume-pools NAME[=PATH][:SIZE],…   fake: NAME:SIZE; file: NAME=PATH[:SIZE]
 *
 * SIZE is bytes or a number with K, M, G or T (powers of 1024); a file
 * pool without one may fill the file system it is on.
 */
import { resolve } from "node:path";
import type { Logger } from "pino";
import type { VolumeBackend } from "./backend.js";
import { MAX_POOLS_PER_HOST, POOL_NAME } from "../../controller/domain/volume.js";
import { makeVolumeBackend } from "./index.js";
import { parseVolumeFaults, type VolumeFaults } from "./fake/faults.js";

/** The flags, merged into the agent's table (same shape). */
export const VOLUME_FLAGS = {
  "volume-backend": { env: "NOVAMESH_VOLUME_BACKEND", type: "string", help: "serve volumes from this host: file (qcow2 files in directories, NBD over TLS) or fake; default none (not a volume host)" },
  "volume-pools": { env: "NOVAMESH_VOLUME_POOLS", type: "string", help: "the volume backend's pools, comma separated: NAME=PATH[:SIZE] (file) or NAME:SIZE (fake); SIZE in bytes or with K, M, G, T" },
  "volume-address": { env: "NOVAMESH_VOLUME_ADDRESS", type: "string", default: () => "127.0.0.1", help: "the address compute hosts reach this volume host's exports at (listened on)" },
  "volume-ports": { env: "NOVAMESH_VOLUME_PORTS", type: "string", default: () => "10809-11808", help: "ports of the export servers (file backend: one per exported volume; the range bounds how many volumes can be exported at once): FIRST-LAST" },
  "volume-tls-dir": { env: "NOVAMESH_VOLUME_TLS_DIR", type: "string", help: "file backend: qemu's x509 directory with ca-cert.pem (the compute hosts' CA), server-cert.pem and server-key.pem (this host's)" },
  "fake-volume-faults": { env: "NOVAMESH_FAKE_VOLUME_FAULTS", type: "string", help: `fake volume backend: faults as JSON (see agent/volume/fake/faults.ts), e.g. '{"create":{"delayMs":5000},"extend":{"error":"full","code":"POOL_FULL","retryable":true}}'` },
} as const;

/** A pool as the flags give it. */
export interface PoolFlag {
  readonly name: string;
  readonly path: string | undefined;
  readonly sizeBytes: number | undefined;
}

/** The parsed volume settings; undefined when the host serves no volumes. */
export interface VolumeCliConfig {
  readonly backend: "fake" | "file";
  readonly pools: readonly PoolFlag[];
  readonly address: string;
  readonly ports: readonly [number, number];
  readonly tlsDir: string | undefined;
  /** fake: injected faults. */
  readonly faults: VolumeFaults | undefined;
}

const UNITS: Record<string, number> = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Bytes of a SIZE ("100G", "512M", "4096"), or undefined when it is not one. */
export function parseSize(s: string): number | undefined {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The volume settings of the flags `get` reads; `fail` throws the agent's
 * usage error. `hosts` is the number of agents the process runs.
 */
export function volumeConfigOf(get: (name: keyof typeof VOLUME_FLAGS) => string | undefined, fail: (message: string) => never, hosts: number): VolumeCliConfig | undefined {
  const backend = get("volume-backend");
  if (backend === undefined || backend === "") {
    if (get("volume-pools") !== undefined) fail("--volume-pools needs --volume-backend");
    return undefined;
  }
  if (backend !== "fake" && backend !== "file") fail(`--volume-backend: unknown backend "${backend}" (known: file, fake)`);
  if (backend === "file" && hosts !== 1) fail("--volume-backend file: one agent per process (its pools are directories of this machine)");
  const raw = get("volume-pools");
  if (!raw) fail("--volume-backend needs --volume-pools");
  const pools = raw.split(",").map((spec) => poolOf(spec.trim(), backend, fail));
  if (pools.length > MAX_POOLS_PER_HOST) fail(`--volume-pools: at most ${MAX_POOLS_PER_HOST} pools (got ${pools.length})`);
  const names = new Set<string>();
  for (const p of pools) {
    if (names.has(p.name)) fail(`--volume-pools: pool "${p.name}" is named twice`);
    names.add(p.name);
  }
  const ports = /^(\d{1,5})-(\d{1,5})$/.exec(get("volume-ports") ?? "");
  const first = Number(ports?.[1]);
  const last = Number(ports?.[2]);
  if (!ports || first < 1 || last > 65535 || first > last) fail(`--volume-ports: "${get("volume-ports")}" is not FIRST-LAST within 1-65535`);
  const tlsDir = get("volume-tls-dir");
  if (backend === "file" && !tlsDir) fail("--volume-backend file needs --volume-tls-dir (exports are NBD over TLS only)");
  const rawFaults = get("fake-volume-faults");
  if (rawFaults && backend !== "fake") fail("--fake-volume-faults needs --volume-backend fake");
  let faults: VolumeFaults | undefined;
  if (rawFaults) {
    try {
      faults = parseVolumeFaults(JSON.parse(rawFaults));
    } catch (err) {
      fail(`--fake-volume-faults: ${(err as Error).message}`);
    }
  }
  return { backend, pools, address: get("volume-address")!, ports: [first, last], tlsDir, faults };
}

function poolOf(spec: string, backend: "fake" | "file", fail: (message: string) => never): PoolFlag {
  const m = /^([^=:]*)(?:=([^:]+))?(?::([^:]+))?$/.exec(spec);
  if (!m || !POOL_NAME.test(m[1]!)) fail(`--volume-pools: "${spec}" is not NAME=PATH[:SIZE] or NAME:SIZE (names: 1-64 letters, digits, '.', '-', '_')`);
  const [, name, path, size] = m;
  const sizeBytes = size === undefined ? undefined : parseSize(size);
  if (size !== undefined && sizeBytes === undefined) fail(`--volume-pools: pool "${name}": "${size}" is not a size (bytes, or a number with K, M, G, T)`);
  if (backend === "fake" && (path !== undefined || sizeBytes === undefined)) fail(`--volume-pools: fake pool "${name}" is NAME:SIZE`);
  if (backend === "file" && path === undefined) fail(`--volume-pools: file pool "${name}" is NAME=PATH[:SIZE]`);
  return { name: name!, path, sizeBytes };
}

/** The backend `config` asks for, for one agent; its state lives in `<stateDir>/volumes`. */
export function makeVolumes(config: VolumeCliConfig, stateDir: string, logger: Logger): VolumeBackend {
  const state = resolve(stateDir, "volumes");
  if (config.backend === "fake") {
    return makeVolumeBackend({
      kind: "fake",
      pools: config.pools.map((p) => ({ name: p.name, totalBytes: p.sizeBytes! })),
      stateDir: state,
      address: config.address,
      basePort: config.ports[0],
      ...(config.faults ? { faults: config.faults } : {}),
    });
  }
  return makeVolumeBackend({
    kind: "file",
    pools: config.pools.map((p) => ({ name: p.name, path: resolve(p.path!), ...(p.sizeBytes !== undefined ? { limitBytes: p.sizeBytes } : {}) })),
    stateDir: state,
    exports: { address: config.address, ports: config.ports, tlsDir: resolve(config.tlsDir!) },
    logger,
  });
}
