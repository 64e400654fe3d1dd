/**
 * One qemu-storage-daemon per exported volume: how it is started
 * (daemonized, a QMP monitor on a unix socket, an NBD server on its own
 * port with TLS that verifies the peer and an authz-list that admits only
 * the certificates of the hosts the volume is exported to, changed at
 * runtime with {@link setAuthzClients}), found again after an agent
 * restart (the pid file, checked against `/proc/<pid>/cmdline`), and
 * stopped.
 */
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { DriverError } from "../../drivers/errors.js";
import { isMissing } from "../../network/linux/files.js";
import { optValue, runProgram } from "./qemu-img.js";
import { withQmp, type QmpClient } from "./qmp.js";

/** Where one daemon's files are and what it serves. */
export interface DaemonSpec {
  /** What the daemon serves, for messages ("volume <id>"). */
  readonly name: string;
  /** The hosts (their certificates' CN) the daemon admits when it starts. */
  readonly clients: readonly string[];
  readonly pidFile: string;
  readonly socket: string;
  readonly address: string;
  readonly port: number;
  /** qemu's x509 directory: ca-cert.pem, server-cert.pem, server-key.pem. */
  readonly tlsDir: string;
}

/**
 * The rules of the authz list that admits `clients`: for each, a
 * certificate whose DN is `CN=<client>`, or ends or begins with that CN
 * (`O=…,CN=<client>`). Only certificates the CA signed get this far
 * (verify-peer). A DN with an escaped character is refused first: a value
 * holding ",CN=<client>" (printed `OU=x\,CN=<client>`) would otherwise end
 * like the RDN looked for. (The glob is GLib's: `*` and `?` only, a
 * backslash is itself.) No clients: only the refusal; the list's policy
 * denies the rest.
 */
export function authzRules(clients: readonly string[]): Record<string, string>[] {
  return [
    { match: "*\\*", policy: "deny", format: "glob" },
    ...[...new Set(clients)].sort().flatMap((client) => [
      { match: `CN=${client}`, policy: "allow", format: "exact" },
      { match: `*,CN=${client}`, policy: "allow", format: "glob" },
      { match: `CN=${client},*`, policy: "allow", format: "glob" },
    ]),
  ];
}

/** The daemon's authz list (identities as GnuTLS prints them; see {@link authzRules}). */
export function authzObject(clients: readonly string[]): Record<string, unknown> {
  return { "qom-type": "authz-list", id: "authz0", policy: "deny", rules: authzRules(clients) };
}

/** Makes a running daemon admit exactly `clients` (new TLS sessions; connections already open stay). */
export async function setAuthzClients(qmp: QmpClient, clients: readonly string[]): Promise<void> {
  await qmp.execute("qom-set", { path: "/objects/authz0", property: "rules", value: authzRules(clients) });
}

/** The daemon's command line (after the binary). */
export function daemonArgs(spec: DaemonSpec): string[] {
  return [
    "--daemonize",
    "--pidfile",
    spec.pidFile,
    "--chardev",
    `socket,id=qmp,path=${optValue(spec.socket)},server=on,wait=off`,
    "--monitor",
    "chardev=qmp",
    "--object",
    JSON.stringify({ "qom-type": "tls-creds-x509", id: "tls0", dir: spec.tlsDir, endpoint: "server", "verify-peer": true }),
    "--object",
    JSON.stringify(authzObject(spec.clients)),
    "--nbd-server",
    JSON.stringify({ addr: { type: "inet", host: spec.address, port: String(spec.port) }, "tls-creds": "tls0", "tls-authz": "authz0" }),
  ];
}

/** Starts a daemon; resolves once it listens (the foreground process exits then). A port in use is "EXPORT_PORT_IN_USE". */
export async function startDaemon(binary: string, spec: DaemonSpec, timeoutMs: number): Promise<number> {
  try {
    await runProgram(binary, daemonArgs(spec), timeoutMs);
  } catch (err) {
    if (err instanceof DriverError && /Address already in use/i.test(err.message)) {
      throw new DriverError("EXPORT_PORT_IN_USE", `port ${spec.port} is taken: ${err.message}`, { retryable: true, cause: err });
    }
    throw err;
  }
  const pid = await daemonPid(spec);
  if (pid === undefined) throw new DriverError("VOLUME_COMMAND_FAILED", `qemu-storage-daemon for ${spec.name} started but is not running`, { retryable: true });
  return pid;
}

/** The pid of the daemon of `spec` if it runs (its pid file names a live process whose command line has its socket). */
export async function daemonPid(spec: Pick<DaemonSpec, "pidFile" | "socket">): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(spec.pidFile, "utf8");
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  const pid = Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  let cmdline: string;
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  return cmdline.split("\0").some((arg) => arg.includes(`path=${optValue(spec.socket)},`)) ? pid : undefined;
}

/** Whether process `pid` is gone (or a zombie). */
async function gone(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return / Z /.test(stat.slice(stat.lastIndexOf(")") + 1, stat.lastIndexOf(")") + 4));
  } catch (err) {
    if (isMissing(err)) return true;
    throw err;
  }
}

/** SIGKILL to `pid`; one that is already gone (ESRCH) is what was wanted. */
export function killHard(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** Stops a daemon: QMP `quit`, then SIGKILL if it is still there after `timeoutMs`. */
export async function stopDaemon(spec: Pick<DaemonSpec, "pidFile" | "socket" | "name">, timeoutMs: number, warn: (msg: string, err: unknown) => void): Promise<void> {
  const pid = await daemonPid(spec);
  if (pid === undefined) return;
  try {
    await withQmp(spec.socket, timeoutMs, (qmp) => qmp.execute("quit"));
  } catch (err) {
    warn(`QMP quit of the export daemon of ${spec.name} failed; killing it`, err);
    killHard(pid);
  }
  const deadline = Date.now() + timeoutMs;
  while (!(await gone(pid))) {
    if (Date.now() > deadline) {
      // Only while the pid is still this daemon's (not a process that got the pid since).
      if ((await daemonPid(spec)) !== pid) break;
      warn(`the export daemon of ${spec.name} did not exit ${timeoutMs} ms after quit; killing it`, undefined);
      killHard(pid);
      break;
    }
    await sleep(20);
  }
}
