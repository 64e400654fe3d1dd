/**
 * Ending connections a port's rules no longer admit (see README.md,
 * "Security"). The port's chains accept `ct state established,related`
 * first, so a connection admitted by a rule that is then removed would go
 * on as long as its conntrack entry lives. As Neutron does, the driver
 * deletes such entries with Debian's `conntrack` tool, in the port's zone:
 *
 * - after a replug whose rules admit less than before (a rule gone, a
 *   remote group member gone, port security turned on): the entries of the
 *   port's connections in the directions that lost something are listed
 *   (`-L`, orig-dst = a port address for ingress, orig-src for egress),
 *   and those the new rules would not admit as new connections are deleted
 *   by their exact tuple in one `conntrack -R <file>` batch;
 * - on unplug: every entry to or from the port's addresses.
 *
 * The next packet of a deleted connection is tracked as new and meets the
 * port's current rules: dropped unless they admit it.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import type { PortSpec, SecurityRuleSpec } from "../types.js";
import { cidrContains, parseCidr } from "./cidr.js";
import { CommandError, type Runner } from "./commands.js";
import { ruleMatch } from "./security.js";

export type Direction = "ingress" | "egress";

/** The original direction of a conntrack entry (`conntrack -L` output). */
export interface Flow {
  readonly protonum: number;
  readonly src: string;
  readonly dst: string;
  /** tcp, udp: ports. */
  readonly sport?: number;
  readonly dport?: number;
  /** icmp: type, code and identifier. */
  readonly type?: number;
  readonly code?: number;
  readonly id?: number;
}

/**
 * Parses `conntrack -L` lines ("tcp 6 431999 ESTABLISHED src=… dst=… sport=…
 * dport=… src=… …"): the first src, dst and ports of a line are the
 * original direction's. Lines without both addresses are skipped.
 */
export function parseFlows(text: string): Flow[] {
  const flows: Flow[] = [];
  for (const line of text.split("\n")) {
    const tokens = line.trim().split(/\s+/);
    const protonum = Number(tokens[1]);
    if (!Number.isInteger(protonum)) continue;
    const fields = new Map<string, string>();
    for (const t of tokens.slice(2)) {
      const eq = t.indexOf("=");
      if (eq > 0 && !fields.has(t.slice(0, eq))) fields.set(t.slice(0, eq), t.slice(eq + 1));
    }
    const src = fields.get("src");
    const dst = fields.get("dst");
    if (!src || !dst) continue;
    const num = (k: string) => (fields.has(k) ? Number(fields.get(k)) : undefined);
    flows.push({ protonum, src, dst, sport: num("sport"), dport: num("dport"), type: num("type"), code: num("code"), id: num("id") });
  }
  return flows;
}

/**
 * Whether `rule` admits `flow` as a new connection of the port in
 * `direction`: the same test as the nft rule `ruleMatch` makes of it.
 */
export function admits(rule: SecurityRuleSpec, flow: Flow, direction: Direction): boolean {
  if (rule.direction !== direction) return false;
  const remote = direction === "ingress" ? flow.src : flow.dst;
  if (rule.remoteCidr) {
    if (rule.remoteCidr.includes(":")) return false;
    if (!cidrContains(parseCidr(rule.remoteCidr.includes("/") ? rule.remoteCidr : `${rule.remoteCidr}/32`), remote)) return false;
  }
  if (rule.remoteAddresses && !rule.remoteAddresses.includes(remote)) return false;
  switch (rule.protocol) {
    case "":
      return true;
    case "tcp":
    case "udp": {
      if (flow.protonum !== (rule.protocol === "tcp" ? 6 : 17)) return false;
      if (rule.portMin <= 0 && rule.portMax <= 0) return true;
      const lo = rule.portMin > 0 ? rule.portMin : 1;
      const hi = rule.portMax >= lo ? rule.portMax : lo;
      return flow.dport !== undefined && flow.dport >= lo && flow.dport <= hi;
    }
    case "icmp":
      if (flow.protonum !== 1) return false;
      if (rule.portMin < 0) return true;
      return flow.type === rule.portMin && (rule.portMax < 0 || flow.code === rule.portMax);
    default:
      return /^\d+$/.test(rule.protocol) && flow.protonum === Number(rule.protocol);
  }
}

/** Whether the port's chain of `direction` admits `flow` as new: its DHCP rule or one of its rules. */
export function admitted(port: PortSpec, flow: Flow, direction: Direction): boolean {
  const [sport, dport] = direction === "egress" ? [68, 67] : [67, 68];
  if (flow.protonum === 17 && flow.sport === sport && flow.dport === dport) return true;
  return port.securityRules.some((r) => admits(r, flow, direction));
}

/**
 * The directions in which the port's new spec admits less than `old` did:
 * none when it was not plugged here or has no port security now; both
 * when port security was off; else each direction with a rule of `old`
 * that `port` no longer has, compared as the nft rules they make with a
 * remote group taken one member at a time (a group that lost a member
 * counts, one that gained one does not).
 */
export function directionsToFlush(old: PortSpec | undefined, port: PortSpec): Direction[] {
  if (!old || !port.portSecurity) return [];
  if (!old.portSecurity) return ["ingress", "egress"];
  const matches = (p: PortSpec, d: Direction) =>
    p.securityRules
      .filter((r) => r.direction === d)
      .flatMap((r) => (r.remoteAddresses ? r.remoteAddresses.map((a) => ({ ...r, remoteAddresses: [a] })) : [r]))
      .map(ruleMatch)
      .filter((m) => m !== null);
  return (["ingress", "egress"] as const).filter((d) => {
    const now = new Set(matches(port, d));
    return matches(old, d).some((m) => !now.has(m));
  });
}

/** The `conntrack -R` line that deletes exactly `flow`'s entry in `zone`. */
export function deleteLine(zone: number, flow: Flow): string {
  const parts = ["-D", "-w", String(zone), "-f", "ipv4"];
  if ((flow.protonum === 6 || flow.protonum === 17) && flow.sport !== undefined && flow.dport !== undefined) {
    parts.push("-p", flow.protonum === 6 ? "tcp" : "udp", "-s", flow.src, "-d", flow.dst, "--sport", String(flow.sport), "--dport", String(flow.dport));
  } else if (flow.protonum === 1 && flow.type !== undefined && flow.code !== undefined && flow.id !== undefined) {
    parts.push("-p", "icmp", "-s", flow.src, "-d", flow.dst, "--icmp-type", String(flow.type), "--icmp-code", String(flow.code), "--icmp-id", String(flow.id));
  } else {
    parts.push("-p", String(flow.protonum), "-s", flow.src, "-d", flow.dst);
  }
  return parts.join(" ");
}

/**
 * Whether a failed `conntrack -D` only found nothing to delete: some
 * versions (1.4.7 among them) exit with status 1 and say so on stderr.
 * Any other failure is one.
 */
export function isNothingDeleted(err: unknown): boolean {
  return (
    err instanceof CommandError &&
    err.exitCode === 1 &&
    /^conntrack v[\w.~+-]+ \(conntrack-tools\): 0 flow entries have been deleted\.$/.test(err.stderr)
  );
}

/** The IPv4 addresses of a port (its security covers no others). */
function ipv4Of(port: PortSpec): string[] {
  return port.fixedIps.map((f) => f.address).filter((a) => !a.includes(":"));
}

/** Deletes conntrack entries of ports, with `conntrack` in the driver's namespace. */
export class Connections {
  constructor(
    private readonly run: Runner,
    private readonly log: Logger,
  ) {}

  /**
   * After `port` was replugged (its new chains in place): deletes, in
   * `zone`, the entries of its connections the new rules would not admit,
   * in each direction where `old` admitted more. Resolves how many.
   */
  async afterReplug(old: PortSpec | undefined, port: PortSpec, zone: number): Promise<number> {
    const lines: string[] = [];
    for (const direction of directionsToFlush(old, port)) {
      for (const address of ipv4Of(port)) {
        const listed = await this.conntrack(["-L", "-w", String(zone), "-f", "ipv4", direction === "ingress" ? "-d" : "-s", address]);
        for (const flow of parseFlows(listed)) if (!admitted(port, flow, direction)) lines.push(deleteLine(zone, flow));
      }
    }
    if (lines.length === 0) return 0;
    // One process for all of them (a server port may have thousands), from a
    // file: `-R -` cannot open /dev/stdin when it is a socket, as execFile's is.
    const dir = await mkdtemp(join(tmpdir(), "nm-conntrack-"));
    try {
      const file = join(dir, "delete");
      await writeFile(file, `${lines.join("\n")}\n`);
      await this.conntrack(["-R", file]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    this.log.info({ port: port.id, zone, deleted: lines.length }, "deleted the entries of connections the port's rules no longer admit");
    return lines.length;
  }

  /** Deletes every entry in `zone` to or from one of the port's addresses (it is unplugged). */
  async forget(port: PortSpec, zone: number): Promise<void> {
    for (const address of ipv4Of(port)) {
      for (const side of ["-d", "-s"]) await this.conntrack(["-D", "-w", String(zone), "-f", "ipv4", side, address]);
    }
  }

  /** Runs conntrack; resolves its stdout, or "" when a delete found nothing (not a failure). */
  private async conntrack(args: string[]): Promise<string> {
    try {
      return await this.run.run({ file: "conntrack", args });
    } catch (err) {
      if (isNothingDeleted(err)) return "";
      throw err;
    }
  }
}
