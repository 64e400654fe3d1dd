/**
 * A network's DHCP server on this host (Neutron's DHCP agent, per host):
 * dnsmasq in its own network namespace, joined to the network's bridge by a
 * veth pair whose namespace end carries the network's DHCP port (its MAC
 * and addresses). dnsmasq only hands out static leases: exactly the fixed
 * IPs of the ports plugged on this host (`--dhcp-hostsfile`), and ignores
 * every other client (`--dhcp-ignore=tag:!known`), so the DHCP servers of
 * several hosts on one L2 segment each answer only their own ports.
 *
 * dnsmasq runs as a daemon with a pid file in the driver's state directory
 * and outlives the agent; a restarted agent finds it by that pid file (and
 * checks `/proc/<pid>/cmdline` names that pid file), sends it SIGHUP when
 * its hosts or options change and starts it again when its command line
 * would change (a subnet added, another lease time).
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { bestEffort } from "../../best-effort.js";
import type { NetworkSpec, PortSpec, SubnetSpec } from "../types.js";
import { parseCidr } from "./cidr.js";
import { isNotFound, type Runner } from "./commands.js";
import { isMissing, readIfExists, writeAtomic } from "./files.js";
import { dhcpNamespacePrefix, dhcpNames, type DhcpNames } from "./naming.js";

/** How the DHCP servers are run. */
export interface DhcpOptions {
  /** Directory of the per-network files (`<dir>/<network id>/{pid,hosts,opts,leases,dnsmasq.log}`). */
  readonly dir: string;
  /** The agent's host tag (part of the namespace and veth names). */
  readonly tag: string;
  /** The dnsmasq executable. */
  readonly dnsmasqPath: string;
  /** Lease time handed out, seconds. */
  readonly leaseSeconds: number;
}

/** The files of one network's dnsmasq. */
interface DhcpFiles {
  readonly dir: string;
  readonly pid: string;
  readonly hosts: string;
  readonly opts: string;
  readonly leases: string;
  readonly log: string;
}

/** The DHCP-enabled subnets of a network that the DHCP port has an address on, with that address. */
function servedSubnets(network: NetworkSpec): { subnet: SubnetSpec; address: string; tag: string }[] {
  const port = network.dhcpPort;
  if (!port) return [];
  const out: { subnet: SubnetSpec; address: string; tag: string }[] = [];
  network.subnets.forEach((subnet, i) => {
    const ip = port.fixedIps.find((f) => f.subnetId === subnet.id);
    if (subnet.dhcp && ip) out.push({ subnet, address: ip.address, tag: `s${i}` });
  });
  return out;
}

/** The `--dhcp-hostsfile` of a network: one `MAC,address` line per fixed IP on a served subnet. */
export function hostsFile(network: NetworkSpec, ports: readonly PortSpec[]): string {
  const served = new Set(servedSubnets(network).map((s) => s.subnet.id));
  const lines = ports.flatMap((p) => p.fixedIps.filter((f) => served.has(f.subnetId)).map((f) => `${p.mac.toLowerCase()},${f.address}`));
  return lines.map((l) => `${l}\n`).join("");
}

/** The `--dhcp-optsfile` of a network: router, DNS servers, MTU and classless routes per served subnet. */
export function optsFile(network: NetworkSpec): string {
  const lines: string[] = [];
  for (const { subnet, tag } of servedSubnets(network)) {
    // An option with no value is not sent: no router on an isolated subnet, no DNS server but the ones given.
    lines.push(subnet.gatewayIp ? `tag:${tag},option:router,${subnet.gatewayIp}` : `tag:${tag},option:router`);
    lines.push([`tag:${tag},option:dns-server`, ...subnet.dnsServers].join(","));
    lines.push(`tag:${tag},option:mtu,${network.mtu}`);
    if (subnet.hostRoutes.length > 0) {
      // A client given option 121 ignores the router option (RFC 3442): the default route goes in it too.
      const routes = subnet.hostRoutes.map((r) => `${r.destination},${r.nexthop}`);
      if (subnet.gatewayIp && !subnet.hostRoutes.some((r) => r.destination === "0.0.0.0/0")) routes.push(`0.0.0.0/0,${subnet.gatewayIp}`);
      lines.push(`tag:${tag},option:classless-static-route,${routes.join(",")}`);
    }
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** dnsmasq's command line for a network (without the executable). */
export function dnsmasqArgs(network: NetworkSpec, names: DhcpNames, files: DhcpFiles, leaseSeconds: number): string[] {
  return [
    "--conf-file=/dev/null",
    "--no-hosts",
    "--no-resolv",
    "--port=0",
    "--user=root",
    "--group=root",
    `--pid-file=${files.pid}`,
    `--dhcp-hostsfile=${files.hosts}`,
    `--dhcp-optsfile=${files.opts}`,
    `--dhcp-leasefile=${files.leases}`,
    `--log-facility=${files.log}`,
    "--log-dhcp",
    `--interface=${names.nsVeth}`,
    "--except-interface=lo",
    "--bind-interfaces",
    ...servedSubnets(network).map(({ subnet, tag }) => {
      const c = parseCidr(subnet.cidr);
      return `--dhcp-range=set:${tag},${c.network},static,${c.netmask},${leaseSeconds}s`;
    }),
    "--dhcp-ignore=tag:!known",
    "--dhcp-authoritative",
  ];
}

/** The DHCP servers of one agent. */
export class DhcpServers {
  constructor(
    private readonly run: Runner,
    private readonly log: Logger,
    private readonly options: DhcpOptions,
  ) {}

  /** Names of the agent's DHCP namespace and veth pair for a network. */
  names(networkId: string): DhcpNames {
    return dhcpNames(this.options.tag, networkId);
  }

  private files(networkId: string): DhcpFiles {
    const dir = join(this.options.dir, networkId);
    return {
      dir,
      pid: join(dir, "dnsmasq.pid"),
      hosts: join(dir, "hosts"),
      opts: join(dir, "opts"),
      leases: join(dir, "leases"),
      log: join(dir, "dnsmasq.log"),
    };
  }

  /**
   * Makes the network's DHCP server serve exactly `ports` (the ports of the
   * network plugged on this host): namespace, veth on `bridge`, the DHCP
   * port's MAC and addresses, files, a running dnsmasq. A network without a
   * DHCP port has no server (one left from before is removed).
   */
  async ensure(network: NetworkSpec, bridge: string, ports: readonly PortSpec[]): Promise<void> {
    const served = servedSubnets(network);
    if (served.length === 0 || !network.dhcpPort) {
      await this.remove(network.id);
      return;
    }
    const names = this.names(network.id);
    const files = this.files(network.id);
    await mkdir(files.dir, { recursive: true, mode: 0o755 });
    if (!(await this.namespaces()).includes(names.namespace)) {
      await this.run.run({ file: "ip", args: ["netns", "add", names.namespace], netns: null });
    }
    const ns = (...args: string[]) => this.run.run({ file: "ip", args, netns: names.namespace });
    if (!(await this.hostVethExists(names.hostVeth))) {
      await this.run.ip("link", "add", names.hostVeth, "mtu", String(network.mtu), "type", "veth", "peer", "name", names.nsVeth, "netns", names.namespace);
    }
    await this.run.ip("link", "set", "dev", names.hostVeth, "mtu", String(network.mtu), "master", bridge, "up");
    await ns("link", "set", "dev", "lo", "up");
    await ns("link", "set", "dev", names.nsVeth, "address", network.dhcpPort.mac.toLowerCase(), "mtu", String(network.mtu), "up");
    await this.syncAddresses(names, served.map(({ subnet, address }) => `${address}/${parseCidr(subnet.cidr).prefixLength}`));
    await writeAtomic(files.hosts, hostsFile(network, ports));
    await writeAtomic(files.opts, optsFile(network));
    const args = dnsmasqArgs(network, names, files, this.options.leaseSeconds);
    const pid = await this.runningPid(files);
    if (pid !== undefined && (await this.cmdline(pid))?.slice(1).join("\0") === args.join("\0")) {
      try {
        process.kill(pid, "SIGHUP");
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
        this.log.info({ network: network.id, pid }, "dnsmasq exited meanwhile; starting it again");
      }
    }
    if (pid !== undefined) {
      this.log.info({ network: network.id, pid }, "dnsmasq's command line changed; restarting it");
      await this.stop(pid);
    }
    await this.run.run({ file: this.options.dnsmasqPath, args, netns: names.namespace });
  }

  private async hostVethExists(name: string): Promise<boolean> {
    try {
      await this.run.ip("link", "show", "dev", name);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Makes the namespace end's IPv4 addresses exactly `want` ("a.b.c.d/len"). */
  private async syncAddresses(names: DhcpNames, want: readonly string[]): Promise<void> {
    const ns = (...args: string[]) => this.run.run({ file: "ip", args, netns: names.namespace });
    const out = await ns("-j", "-4", "addr", "show", "dev", names.nsVeth);
    const links = (out.trim() ? JSON.parse(out) : []) as { addr_info?: { local: string; prefixlen: number }[] }[];
    const have = new Set(links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`)));
    for (const a of want) if (!have.has(a)) await ns("addr", "add", a, "dev", names.nsVeth);
    for (const a of have) if (!want.includes(a)) await ns("addr", "del", a, "dev", names.nsVeth);
  }

  /** The pid of the network's dnsmasq if it is running (and is ours), else undefined. */
  private async runningPid(files: DhcpFiles): Promise<number | undefined> {
    const text = await readIfExists(files.pid);
    const pid = Number(text?.trim());
    if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
    const cmd = await this.cmdline(pid);
    if (!cmd || !cmd.includes(`--pid-file=${files.pid}`)) return undefined;
    return pid;
  }

  /** A process's command line; undefined if it is gone or a zombie (whose command line is empty). */
  private async cmdline(pid: number): Promise<string[] | undefined> {
    try {
      const args = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter((s) => s !== "");
      return args.length > 0 ? args : undefined;
    } catch (err) {
      // ESRCH: it exited while being read.
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === "ESRCH") return undefined;
      throw err;
    }
  }

  /** Stops a dnsmasq: SIGTERM, then SIGKILL after 3 s. */
  private async stop(pid: number): Promise<void> {
    try {
      process.kill(pid, "SIGTERM");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return;
      throw err;
    }
    for (let i = 0; i < 60; i++) {
      if (!(await this.cmdline(pid))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    this.log.warn({ pid }, "dnsmasq did not stop on SIGTERM; killing it");
    try {
      process.kill(pid, "SIGKILL");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  /**
   * Removes the network's DHCP server: stops dnsmasq, deletes the veth
   * pair and the namespace and the network's files. Resolves if there was none.
   */
  async remove(networkId: string): Promise<void> {
    const names = this.names(networkId);
    const files = this.files(networkId);
    const pid = await this.runningPid(files);
    if (pid !== undefined) await this.stop(pid);
    if (await this.hostVethExists(names.hostVeth)) {
      await this.run.ip("link", "del", "dev", names.hostVeth);
    }
    if ((await this.namespaces()).includes(names.namespace)) {
      await this.run.run({ file: "ip", args: ["netns", "del", names.namespace], netns: null });
    }
    await rm(files.dir, { recursive: true, force: true });
  }

  /** The agent's DHCP namespaces on this machine. */
  async namespaces(): Promise<string[]> {
    const out = await this.run.run({ file: "ip", args: ["netns", "list"], netns: null });
    return out
      .split("\n")
      .map((l) => l.split(" ")[0] ?? "")
      .filter((n) => n !== "");
  }

  /**
   * Ids of the networks this agent has a DHCP server (or what is left of
   * one: a namespace, a state directory) for.
   */
  async networks(): Promise<string[]> {
    const prefix = dhcpNamespacePrefix(this.options.tag);
    const ids = new Set((await this.namespaces()).filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length)));
    try {
      for (const d of await readdir(this.options.dir)) ids.add(d);
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
    return [...ids];
  }

  /** Removes the DHCP server of every network not in `keep`, logging failures. */
  async removeAllBut(keep: ReadonlySet<string>): Promise<void> {
    for (const id of await this.networks()) {
      if (!keep.has(id)) await bestEffort(this.log, "remove unused DHCP server", () => this.remove(id), { network: id });
    }
  }
}
