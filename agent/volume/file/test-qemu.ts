/**
 * Test support for the file backend: whether qemu's tools are here, a
 * backend on temporary directories with a throwaway PKI, and an NBD client
 * (qemu-io, qemu-img) that opens an export over TLS with a compute host's
 * certificate.
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { ExportInfo } from "../backend.js";
import { FileVolumeBackend } from "./file-backend.js";
import type { FileVolumeBackendOptions } from "./options.js";
import { makeTestPki, type TestPki } from "./test-certs.js";

const run = promisify(execFile);

/** Why the file backend's tests cannot run here, or undefined. */
export function fileBackendSkip(): string | undefined {
  const tools = [["qemu-img", "--version", "qemu-utils"], ["qemu-io", "--version", "qemu-utils"], ["qemu-storage-daemon", "--version", "qemu-system-common"], ["openssl", "version", "openssl"]] as const;
  for (const [tool, arg, pkg] of tools) {
    if (spawnSync(tool, [arg], { stdio: "ignore" }).status !== 0) {
      const why = `${tool} is not installed (Debian: ${pkg})`;
      // npm test installs them (scripts/setup-libvirt.sh): there a missing tool is a failure, not a skip.
      if (process.env.NOVAMESH_VOLUME_TOOLS_REQUIRED === "1") throw new Error(`${why}; NOVAMESH_VOLUME_TOOLS_REQUIRED is set`);
      return why;
    }
  }
  return undefined;
}

/** A lab: a temporary directory with a PKI, removed by `cleanup`. */
export class FileLab {
  private constructor(
    readonly dir: string,
    readonly pki: TestPki,
  ) {}

  static async make(): Promise<FileLab> {
    const dir = await mkdtemp(join(tmpdir(), "nmv-"));
    return new FileLab(dir, await makeTestPki(join(dir, "pki")));
  }

  private hosts = 0;
  private static nextPort = 20000 + (process.pid % 200) * 50;

  /** Options of a backend with pools p1 and p2 (`limitBytes` each) in a directory of its own, and a port range of its own. */
  options(limitBytes: number): FileVolumeBackendOptions {
    const root = join(this.dir, `h${++this.hosts}`);
    const first = FileLab.nextPort;
    FileLab.nextPort += 10;
    return {
      pools: [
        { name: "p1", path: join(root, "p1"), limitBytes },
        { name: "p2", path: join(root, "p2"), limitBytes },
      ],
      stateDir: join(root, "x"),
      exports: { address: "127.0.0.1", ports: [first, first + 9], tlsDir: this.pki.serverDir },
      commandTimeoutMs: 10_000,
    };
  }

  backend(options: FileVolumeBackendOptions): FileVolumeBackend {
    return new FileVolumeBackend(options);
  }

  async cleanup(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Whether process `pid` runs (a zombie waiting for its parent does not). */
export async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** qemu-io commands on a volume file no daemon has open (`-U -r` when only reading). */
export async function qemuIoFile(path: string, commands: string[], readOnly = false): Promise<string> {
  const args = [...(readOnly ? ["-U", "-r"] : []), "-f", "qcow2", ...commands.flatMap((c) => ["-c", c]), path];
  return (await run("qemu-io", args, { timeout: 15_000 })).stdout;
}

/** The first byte `qemu-io read -v` prints (at whichever offset it read). */
export function firstByte(out: string): number {
  const m = /^[0-9a-f]{8,}:\s+([0-9a-f]{2})/m.exec(out);
  if (!m?.[1]) throw new Error(`no hex dump in qemu-io's output: ${out}`);
  return parseInt(m[1], 16);
}

/** The `--image-opts` string and `--object` of an NBD client over TLS with the certificates in `clientDir`. */
function nbdArgs(e: ExportInfo, clientDir: string): string[] {
  return [
    "--object",
    `tls-creds-x509,id=tls0,dir=${clientDir},endpoint=client`,
    "--image-opts",
    `driver=nbd,server.type=inet,server.host=${e.host},server.port=${e.port},export=${e.exportName},tls-creds=tls0`,
  ];
}

/** Runs qemu-io against an export as the client whose certificates are in `clientDir`; rejects with qemu-io's message when refused. */
export async function qemuIoNbd(e: ExportInfo, clientDir: string, commands: string[]): Promise<string> {
  const [obj, objValue, imageOpts, spec] = nbdArgs(e, clientDir);
  const args = [obj!, objValue!, ...commands.flatMap((c) => ["-c", c]), imageOpts!, spec!];
  try {
    const { stdout, stderr } = await run("qemu-io", args, { timeout: 15_000 });
    // qemu-io reports a failed open on stderr but may still exit 0 in some versions.
    if (/can't open|Could not open/i.test(stderr)) throw new Error(stderr.trim());
    return stdout;
  } catch (err) {
    const e2 = err as { stderr?: string; message: string };
    throw new Error(e2.stderr?.trim() || e2.message);
  }
}

/** The virtual size `qemu-img info` reads from an export as the client in `clientDir`. */
export async function nbdSize(e: ExportInfo, clientDir: string): Promise<number> {
  const { stdout } = await run("qemu-img", ["info", "--output=json", ...nbdArgs(e, clientDir)], { timeout: 15_000 });
  return (JSON.parse(stdout) as { "virtual-size": number })["virtual-size"];
}

/** A qemu-io holding an export open, as a hypervisor does: it runs commands when told to, on its one connection. */
export interface HeldNbd {
  /** Runs one qemu-io command; resolves what it printed. */
  run(command: string): Promise<string>;
  /** Ends qemu-io (and its connection). */
  close(): Promise<void>;
}

/** Opens an export with an interactive qemu-io as the client whose certificates are in `clientDir`; resolves once it is connected. */
export async function holdNbd(e: ExportInfo, clientDir: string): Promise<HeldNbd> {
  const io = spawn("qemu-io", nbdArgs(e, clientDir), { stdio: ["pipe", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => io.once("exit", () => resolve()));
  let out = "";
  let waiter: (() => void) | undefined;
  const onOutput = (chunk: Buffer) => {
    out += chunk.toString("utf8");
    waiter?.();
  };
  io.stdout.on("data", onOutput);
  io.stderr.on("data", onOutput);
  /** Resolves what was printed up to the next prompt; rejects when qemu-io ends before it. */
  const untilPrompt = () =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const at = out.indexOf("qemu-io> ");
        if (at < 0) return;
        const text = out.slice(0, at);
        out = out.slice(at + "qemu-io> ".length);
        waiter = undefined;
        resolve(text);
      };
      waiter = check;
      void exited.then(() => reject(new Error(`qemu-io ended: ${out.trim()}`)));
      check();
    });
  await untilPrompt();
  return {
    run: async (command) => {
      io.stdin.write(`${command}\n`);
      return untilPrompt();
    },
    close: async () => {
      io.stdin.end("quit\n");
      await exited;
    },
  };
}
