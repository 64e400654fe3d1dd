/**
 * Simulated hosts for the linux network driver's tests: each "host" is a
 * network namespace the driver runs in (its `netns` option), joined to the
 * others by an underlay veth pair; each "guest" is a further namespace with
 * a veth whose host end is the VIF's tap on the VIF's bridge, carrying the
 * port's MAC, so the guest namespace plays the virtual machine.
 *
 * Everything is named with a random prefix and removed by `cleanup()`,
 * which tests call from `after`, so a failed test leaves nothing behind.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { VifSpec } from "../types.js";

const exec = promisify(execFile);

/** Runs a command, resolving stdout; rejects with stderr in the message. */
export async function sh(file: string, ...args: string[]): Promise<string> {
  try {
    return (await exec(file, args, { timeout: 20_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${file} ${args.join(" ")}: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

/**
 * `reason` to skip, unless NOVAMESH_NETWORK_TOOLS_REQUIRED is set (npm test
 * installs the tools with scripts/setup-network.sh): then a missing tool is a failure.
 */
export function skipUnlessRequired(reason: string | undefined): string | undefined {
  if (reason !== undefined && process.env.NOVAMESH_NETWORK_TOOLS_REQUIRED === "1") throw new Error(`${reason}; NOVAMESH_NETWORK_TOOLS_REQUIRED is set`);
  return reason;
}

/** Why these tests cannot run here, or undefined: they need root, `ip netns`, nft, dnsmasq and busybox. */
export async function skipReason(): Promise<string | undefined> {
  return skipUnlessRequired(await missingTool());
}

async function missingTool(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "needs root (network namespaces, bridges, nftables)";
  for (const [file, args] of [
    ["ip", ["netns", "list"]],
    ["nft", ["--version"]],
    ["/usr/sbin/dnsmasq", ["--version"]],
    ["busybox", ["udhcpc", "--help"]],
  ] as const) {
    try {
      await exec(file, [...args]);
    } catch (err) {
      // busybox prints its usage and exits 1; being there is enough.
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return `needs ${file} (${String((err as Error).message)})`;
      if (file !== "busybox") return `${file} ${args.join(" ")} fails: ${String((err as Error).message)}`;
    }
  }
  return undefined;
}

/** A guest's result of a DHCP exchange (udhcpc's script environment). */
export interface DhcpLease {
  readonly ip: string;
  readonly subnet?: string;
  readonly router?: string;
  readonly dns?: string;
  readonly mtu?: string;
  readonly serverid?: string;
  readonly staticroutes?: string;
}

/** A lab of simulated hosts and guests. */
export class Lab {
  /** Prefix of every namespace of this lab. */
  readonly prefix = `nmt${randomBytes(2).toString("hex")}`;
  private readonly namespaces: string[] = [];
  private readonly dirs: string[] = [];
  /** Host tags whose DHCP namespaces and dnsmasqs cleanup removes. */
  private readonly tags = new Set<string>();
  /** State directories whose dnsmasq pid files cleanup reads. */
  private readonly stateDirs: string[] = [];

  /** A fresh, random host tag, remembered for cleanup. */
  tag(): string {
    const t = randomBytes(2).toString("hex");
    this.tags.add(t);
    return t;
  }

  /** A fresh directory, removed by cleanup. */
  async dir(what: string): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), `${this.prefix}-${what}-`));
    this.dirs.push(d);
    return d;
  }

  /** A state directory for a driver (its dnsmasqs are stopped by cleanup). */
  async stateDir(): Promise<string> {
    const d = await this.dir("state");
    this.stateDirs.push(d);
    return d;
  }

  /** A new namespace named `<prefix>-<name>` with lo up. */
  async namespace(name: string): Promise<string> {
    const ns = `${this.prefix}-${name}`;
    await sh("ip", "netns", "add", ns);
    this.namespaces.push(ns);
    await sh("ip", "-n", ns, "link", "set", "lo", "up");
    return ns;
  }

  /**
   * Two hosts joined by an underlay veth pair: `10.99.0.1/24` on the first,
   * `10.99.0.2/24` on the second.
   */
  async hosts(): Promise<[{ ns: string; ip: string }, { ns: string; ip: string }]> {
    const a = await this.namespace("hostA");
    const b = await this.namespace("hostB");
    await sh("ip", "-n", a, "link", "add", "underlay", "type", "veth", "peer", "name", "underlay", "netns", b);
    await sh("ip", "-n", a, "addr", "add", "10.99.0.1/24", "dev", "underlay");
    await sh("ip", "-n", b, "addr", "add", "10.99.0.2/24", "dev", "underlay");
    await sh("ip", "-n", a, "link", "set", "underlay", "up");
    await sh("ip", "-n", b, "link", "set", "underlay", "up");
    return [
      { ns: a, ip: "10.99.0.1" },
      { ns: b, ip: "10.99.0.2" },
    ];
  }

  /**
   * A guest on `hostNs` attached as `vif` says (tap on its bridge, MAC,
   * MTU); `address` ("10.1.0.10/24") configures it statically.
   */
  async guest(name: string, hostNs: string, vif: VifSpec, address?: string): Promise<string> {
    const ns = await this.namespace(name);
    await sh("ip", "-n", hostNs, "link", "add", vif.tap, "mtu", String(vif.mtu), "type", "veth", "peer", "name", "eth0", "netns", ns);
    await sh("ip", "-n", hostNs, "link", "set", vif.tap, "master", vif.bridge, "up");
    await sh("ip", "-n", ns, "link", "set", "eth0", "address", vif.mac, "mtu", String(vif.mtu), "up");
    if (address) await sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0");
    return ns;
  }

  /** Removes a guest's tap (as the hypervisor does when it destroys the instance). */
  async removeTap(hostNs: string, vif: VifSpec): Promise<void> {
    await sh("ip", "-n", hostNs, "link", "del", vif.tap);
  }

  /** Whether `from` gets an answer to one ping of `to` (from `source` if given). */
  async ping(from: string, to: string, source?: string): Promise<boolean> {
    try {
      await exec("ip", ["netns", "exec", from, "busybox", "ping", "-c", "1", "-W", "1", ...(source ? ["-I", source] : []), to], { timeout: 5000 });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Whether a TCP connection from `clientNs` to `address:port` carries a
   * line to a listener in `serverNs` (busybox nc), within 1.5 s.
   */
  async tcpReaches(serverNs: string, clientNs: string, address: string, port: number): Promise<boolean> {
    const children: ChildProcess[] = [];
    try {
      // A child that exits early makes its stdin fail with EPIPE: that only means no connection.
      const failures: Error[] = [];
      const watch = (c: ChildProcess) => {
        children.push(c);
        c.on("error", (err) => failures.push(err));
        c.stdin?.on("error", (err) => failures.push(err));
      };
      const server = spawn("ip", ["netns", "exec", serverNs, "busybox", "nc", "-l", "-p", String(port)], { stdio: ["pipe", "pipe", "ignore"] });
      watch(server);
      let got = "";
      server.stdout.on("data", (d: Buffer) => (got += d.toString()));
      await new Promise((r) => setTimeout(r, 200));
      const client = spawn("ip", ["netns", "exec", clientNs, "busybox", "nc", "-w", "2", address, String(port)], { stdio: ["pipe", "ignore", "ignore"] });
      watch(client);
      client.stdin.write("hello\n");
      for (let i = 0; i < 15 && !got.includes("hello"); i++) await new Promise((r) => setTimeout(r, 100));
      const spawnFailure = failures.find((e) => (e as NodeJS.ErrnoException).code !== "EPIPE");
      if (spawnFailure) throw spawnFailure;
      return got.includes("hello");
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
  }

  /**
   * Runs busybox udhcpc in a guest (no address is configured); resolves
   * the lease it got, or undefined if no server answered.
   */
  async dhcp(guestNs: string, tries = 3): Promise<DhcpLease | undefined> {
    const dir = await this.dir("udhcpc");
    await chmod(dir, 0o755);
    const script = join(dir, "script");
    await writeFile(script, `#!/usr/bin/busybox sh\nif [ "$1" = bound ]; then env > ${dir}/lease; fi\n`, { mode: 0o755 });
    try {
      await exec("ip", ["netns", "exec", guestNs, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", String(tries), "-T", "1", "-s", script, "-O", "mtu", "-O", "staticroutes"], {
        timeout: 15_000,
      });
    } catch {
      return undefined;
    }
    const env = Object.fromEntries(
      (await readFile(join(dir, "lease"), "utf8"))
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    ) as Record<string, string>;
    return { ip: env.ip ?? "", subnet: env.subnet, router: env.router, dns: env.dns, mtu: env.mtu, serverid: env.serverid, staticroutes: env.staticroutes };
  }

  /** Removes everything: dnsmasqs of the lab's drivers, DHCP namespaces of its tags, its namespaces and directories. */
  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    for (const dir of this.stateDirs) {
      let nets: string[] = [];
      try {
        nets = await readdir(join(dir, "dhcp"));
      } catch {
        continue;
      }
      for (const net of nets) {
        try {
          const pid = Number((await readFile(join(dir, "dhcp", net, "dnsmasq.pid"), "utf8")).trim());
          const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8");
          if (cmd.includes(dir)) process.kill(pid, "SIGKILL");
        } catch (err) {
          // No pid file or no such process: nothing to stop. Anything else is the cleanup's failure.
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== "ENOENT" && code !== "ESRCH") errors.push(err);
        }
      }
    }
    const all = (await sh("ip", "netns", "list")).split("\n").map((l) => l.split(" ")[0] ?? "");
    const dhcp = all.filter((n) => [...this.tags].some((t) => n.startsWith(`nmdhcp-${t}-`)));
    for (const ns of [...this.namespaces, ...dhcp]) {
      if (!all.includes(ns)) continue;
      try {
        await sh("ip", "netns", "del", ns);
      } catch (err) {
        errors.push(err);
      }
    }
    for (const d of this.dirs) await rm(d, { recursive: true, force: true });
    if (errors.length) throw new AggregateError(errors, "lab cleanup failed");
  }

  /** Namespaces of this lab and of its tags' DHCP servers still there (for "nothing left behind" checks). */
  async leftovers(): Promise<string[]> {
    const all = (await sh("ip", "netns", "list")).split("\n").map((l) => l.split(" ")[0] ?? "");
    return all.filter((n) => n.startsWith(this.prefix) || [...this.tags].some((t) => n.startsWith(`nmdhcp-${t}-`)));
  }
}

/** Whether process `pid` is running (not gone, not a zombie). */
export async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}
