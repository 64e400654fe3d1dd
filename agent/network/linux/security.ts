/**
 * Port security on nftables (see README.md, "Security"). This kernel has
 * no connection tracking in the bridge family, so the work is split:
 *
 * - bridge family, table `nm_<tag>`, stateless: per port, anti-spoofing at
 *   prerouting (its MAC, its fixed IPs, ARP for its own IP only, DHCP
 *   client traffic, no DHCP server); and marking: a frame from a port gets
 *   the port's slot in the high 16 bits of the packet mark, a frame
 *   forwarded to a port the slot in the low 16 bits.
 * - inet family, table `nm_<tag>`, stateful: the bridge passes IPv4 through
 *   the IP hooks (br_netfilter, `nf_call_iptables` on the bridge), where
 *   `iifname`/`oifname` only name the bridge; the mark says which ports a
 *   packet goes between. A forward chain (priority 0) runs the sending
 *   port's egress chain, a second one (priority 1) the receiving port's
 *   ingress chain, each with conntrack (`ct state established,related`);
 *   an input chain runs the egress chain for traffic to the host itself.
 *   They read marks only of packets that came in through a bridge.
 *
 * A prerouting chain (priority raw) puts the traffic of each VXLAN bridge
 * in a conntrack zone of its own (from the bridge's ifindex), so networks
 * with the same addresses do not share connection entries.
 *
 * Slots are unique per kernel, not per agent, because two agents on one
 * kernel see each other's packets: they are claimed in the shared map
 * `bridge nm_slots slots` (slot → tap), whose `add element` fails if the
 * slot is another tap's. A port's chains, its verdict map elements and its
 * slot claim are written in one `nft -f -` transaction.
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { PortSpec, SecurityRuleSpec } from "../types.js";
import { CommandError, type Runner } from "./commands.js";
import { parseCidr } from "./cidr.js";
import { nftTableName, tapName } from "./naming.js";

/** The shared slot registry: table `bridge nm_slots`, map `slots` (mark → ifname). */
export const SLOT_TABLE = "nm_slots";
const SLOT_MAP = "slots";
/** Slots are 1..65535 (0: no port). */
const SLOT_COUNT = 65535;

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

/** Mark bits of a packet sent by the port in `slot` (high 16 bits). */
export function egressMark(slot: number): number {
  return slot * 0x10000;
}

/** Mark bits of a packet forwarded to the port in `slot` (low 16 bits). */
export function ingressMark(slot: number): number {
  return slot;
}

/** The slot a tap tries first (then the next free one). */
export function preferredSlot(tap: string): number {
  return (createHash("sha256").update(tap).digest().readUInt32BE(0) % SLOT_COUNT) + 1;
}

/** The base of the agent's two tables: maps and hooked chains (idempotent: `add` and `flush`). */
export function baseScript(tag: string): string {
  const t = nftTableName(tag);
  return [
    `add table bridge ${SLOT_TABLE}`,
    `add map bridge ${SLOT_TABLE} ${SLOT_MAP} { type mark : ifname; }`,
    `add table bridge ${t}`,
    `add map bridge ${t} v_spoof { type ifname : verdict; }`,
    `add map bridge ${t} v_out { type ifname : verdict; }`,
    `add chain bridge ${t} b_reset { type filter hook prerouting priority -300; policy accept; }`,
    `flush chain bridge ${t} b_reset`,
    `add rule bridge ${t} b_reset meta mark set 0x0`,
    `add chain bridge ${t} b_spoof { type filter hook prerouting priority -200; policy accept; }`,
    `flush chain bridge ${t} b_spoof`,
    `add rule bridge ${t} b_spoof iifname vmap @v_spoof`,
    `add chain bridge ${t} b_out { type filter hook forward priority -200; policy accept; }`,
    `flush chain bridge ${t} b_out`,
    `add rule bridge ${t} b_out oifname vmap @v_out`,
    `add table inet ${t}`,
    `add map inet ${t} v_zone { typeof iifname : ct zone; }`,
    `add chain inet ${t} b_zone { type filter hook prerouting priority -300; policy accept; }`,
    `flush chain inet ${t} b_zone`,
    `add rule inet ${t} b_zone ct zone set iifname map @v_zone`,
    `add map inet ${t} v_egress { type mark : verdict; }`,
    `add map inet ${t} v_ingress { type mark : verdict; }`,
    `add chain inet ${t} b_egress { type filter hook forward priority 0; policy accept; }`,
    `flush chain inet ${t} b_egress`,
    `add rule inet ${t} b_egress meta iifkind "bridge" meta mark and 0xffff0000 vmap @v_egress`,
    `add chain inet ${t} b_local { type filter hook input priority 0; policy accept; }`,
    `flush chain inet ${t} b_local`,
    `add rule inet ${t} b_local meta iifkind "bridge" meta mark and 0xffff0000 vmap @v_egress`,
    `add chain inet ${t} b_ingress { type filter hook forward priority 1; policy accept; }`,
    `flush chain inet ${t} b_ingress`,
    `add rule inet ${t} b_ingress meta iifkind "bridge" meta mark and 0x0000ffff vmap @v_ingress`,
    "",
  ].join("\n");
}

/** The IPv4 addresses of a port. */
function addresses(port: PortSpec): string[] {
  return port.fixedIps.map((f) => f.address).filter((a) => !a.includes(":"));
}

function set(items: readonly string[]): string {
  return `{ ${items.join(", ")} }`;
}

/** The anti-spoofing rules of a port (bridge family, chain `s_<tap>`), after its mark is set. */
export function antiSpoofRules(port: PortSpec): string[] {
  const mac = port.mac.toLowerCase();
  const ips = addresses(port);
  const rules = [
    `ether saddr != ${mac} drop`,
    `ether type arp arp saddr ether != ${mac} drop`,
    ips.length > 0 ? `ether type arp arp saddr ip != ${set(ips)} drop` : "ether type arp arp saddr ip != 0.0.0.0 drop",
    "ether type arp accept",
    "ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
    "ether type ip udp sport 67 drop",
  ];
  if (ips.length > 0) rules.push(`ether type ip ip saddr ${set(ips)} accept`);
  rules.push("drop");
  return rules;
}

/**
 * One security rule as an nft rule ending in `accept`, or null if it can
 * match nothing here (a remote group without addresses, an IPv6 remote).
 */
export function ruleMatch(rule: SecurityRuleSpec): string | null {
  const parts: string[] = ["meta nfproto ipv4"];
  const remote = rule.direction === "ingress" ? "saddr" : "daddr";
  if (rule.remoteCidr) {
    if (rule.remoteCidr.includes(":")) return null;
    const c = parseCidr(rule.remoteCidr.includes("/") ? rule.remoteCidr : `${rule.remoteCidr}/32`);
    parts.push(`ip ${remote} ${c.network}/${c.prefixLength}`);
  }
  if (rule.remoteAddresses) {
    const v4 = rule.remoteAddresses.filter((a) => !a.includes(":"));
    if (v4.length === 0) return null;
    parts.push(`ip ${remote} ${set(v4)}`);
  }
  switch (rule.protocol) {
    case "":
      break;
    case "tcp":
    case "udp":
      if (rule.portMin > 0 || rule.portMax > 0) {
        const lo = rule.portMin > 0 ? rule.portMin : 1;
        const hi = rule.portMax >= lo ? rule.portMax : lo;
        parts.push(`${rule.protocol} dport ${lo === hi ? lo : `${lo}-${hi}`}`);
      } else {
        parts.push(`meta l4proto ${rule.protocol}`);
      }
      break;
    case "icmp":
      if (rule.portMin >= 0) {
        parts.push(`icmp type ${rule.portMin}`);
        if (rule.portMax >= 0) parts.push(`icmp code ${rule.portMax}`);
      } else {
        parts.push("meta l4proto icmp");
      }
      break;
    default:
      if (/^\d+$/.test(rule.protocol)) parts.push(`meta l4proto ${rule.protocol}`);
      else throw new RangeError(`unknown protocol "${rule.protocol}" in a security rule`);
  }
  parts.push("accept");
  return parts.join(" ");
}

/** A port's stateful chain of one direction (inet family, `e_<tap>` or `i_<tap>`). */
export function directionRules(port: PortSpec, direction: "ingress" | "egress"): string[] {
  const dhcp = direction === "egress" ? "udp sport 68 udp dport 67 accept" : "udp sport 67 udp dport 68 accept";
  const rules = ["ct state established,related accept", "ct state invalid drop", `meta nfproto ipv4 ${dhcp}`];
  for (const r of port.securityRules) {
    if (r.direction !== direction) continue;
    const m = ruleMatch(r);
    if (m) rules.push(m);
  }
  rules.push("drop");
  return rules;
}

/** What the agent's tables hold now, as far as ports are concerned. */
export interface SecurityState {
  /** Chain names of the bridge table. */
  readonly bridgeChains: ReadonlySet<string>;
  /** Chain names of the inet table. */
  readonly inetChains: ReadonlySet<string>;
  /** Verdict map elements: map name → key → target chain. */
  readonly elements: ReadonlyMap<string, ReadonlyMap<string | number, string>>;
  /** The shared slot registry: slot → tap. */
  readonly slots: ReadonlyMap<number, string>;
  /** Conntrack zones of bridges: bridge → zone. */
  readonly zones: ReadonlyMap<string, number>;
}

/**
 * A bridge's conntrack zone: from its ifindex, which every agent on the
 * kernel sees the same, in 1..65535 (0 is the default zone).
 */
export function zoneOf(ifindex: number): number {
  return ((ifindex - 1) % 65535) + 1;
}

/** The script that makes the agent's bridge → zone map exactly `want` (empty if it is). */
export function zonesScript(tag: string, want: ReadonlyMap<string, number>, state: SecurityState): string {
  const t = nftTableName(tag);
  const lines: string[] = [];
  for (const [bridge, zone] of state.zones) {
    if (want.get(bridge) !== zone) lines.push(`delete element inet ${t} v_zone { "${bridge}" }`);
  }
  for (const [bridge, zone] of want) {
    if (state.zones.get(bridge) !== zone) lines.push(`add element inet ${t} v_zone { "${bridge}" : ${zone} }`);
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/** The script that makes a port's chains (atomically replacing what was there) and claims its slot. */
export function portScript(tag: string, port: PortSpec, slot: number, state: SecurityState): string {
  const t = nftTableName(tag);
  const tap = tapName(port.id);
  const lines: string[] = [];
  const chain = (family: string, name: string, rules: readonly string[]) => {
    lines.push(`add chain ${family} ${t} ${name}`, `flush chain ${family} ${t} ${name}`);
    for (const r of rules) lines.push(`add rule ${family} ${t} ${name} ${r}`);
  };
  lines.push(`add element bridge ${SLOT_TABLE} ${SLOT_MAP} { ${hex(slot)} : "${tap}" }`);
  chain("bridge", `s_${tap}`, [`meta mark set meta mark and 0x0000ffff or ${hex(egressMark(slot))}`, ...antiSpoofRules(port)]);
  chain("bridge", `o_${tap}`, [`meta mark set meta mark and 0xffff0000 or ${hex(ingressMark(slot))}`]);
  chain("inet", `e_${tap}`, directionRules(port, "egress"));
  chain("inet", `i_${tap}`, directionRules(port, "ingress"));
  // Elements of this tap under another key (an earlier slot) go first.
  const stale = (map: string, family: string, target: string, key: string | number) => {
    for (const [k, v] of state.elements.get(map) ?? []) {
      if (v === target && k !== key) lines.push(`delete element ${family} ${t} ${map} { ${typeof k === "number" ? hex(k) : `"${k}"`} }`);
    }
  };
  stale("v_egress", "inet", `e_${tap}`, egressMark(slot));
  stale("v_ingress", "inet", `i_${tap}`, ingressMark(slot));
  lines.push(`add element bridge ${t} v_spoof { "${tap}" : jump s_${tap} }`);
  lines.push(`add element bridge ${t} v_out { "${tap}" : jump o_${tap} }`);
  lines.push(`add element inet ${t} v_egress { ${hex(egressMark(slot))} : jump e_${tap} }`);
  lines.push(`add element inet ${t} v_ingress { ${hex(ingressMark(slot))} : jump i_${tap} }`);
  return `${lines.join("\n")}\n`;
}

/** The script that removes everything of tap `tap` that `state` shows (empty if nothing). */
export function removeScript(tag: string, tap: string, state: SecurityState): string {
  const t = nftTableName(tag);
  const lines: string[] = [];
  const maps: [string, string, string][] = [
    ["v_spoof", "bridge", `s_${tap}`],
    ["v_out", "bridge", `o_${tap}`],
    ["v_egress", "inet", `e_${tap}`],
    ["v_ingress", "inet", `i_${tap}`],
  ];
  for (const [map, family, target] of maps) {
    for (const [k, v] of state.elements.get(map) ?? []) {
      if (v === target) lines.push(`delete element ${family} ${t} ${map} { ${typeof k === "number" ? hex(k) : `"${k}"`} }`);
    }
  }
  for (const [, family, name] of maps) {
    const chains = family === "bridge" ? state.bridgeChains : state.inetChains;
    if (chains.has(name)) lines.push(`delete chain ${family} ${t} ${name}`);
  }
  for (const [slot, owner] of state.slots) {
    if (owner === tap) lines.push(`delete element bridge ${SLOT_TABLE} ${SLOT_MAP} { ${hex(slot)} }`);
  }
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/** The taps the agent's tables have chains for. */
export function tapsIn(state: SecurityState): Set<string> {
  const taps = new Set<string>();
  for (const name of [...state.bridgeChains, ...state.inetChains]) {
    const m = /^[soei]_(tap[0-9a-f]+)$/.exec(name);
    if (m?.[1]) taps.add(m[1]);
  }
  return taps;
}

type NftObject = Record<string, { name?: string; elem?: unknown[] } | undefined>;

function elemKey(k: unknown): string | number {
  return typeof k === "number" || typeof k === "string" ? k : JSON.stringify(k);
}

function jumpTarget(v: unknown): string | undefined {
  const j = (v as { jump?: { target?: string } } | undefined)?.jump;
  return j?.target;
}

/** Applies ports' security to the agent's nftables tables. */
export class SecurityTables {
  private based = false;

  constructor(
    private readonly run: Runner,
    private readonly log: Logger,
    private readonly tag: string,
  ) {}

  /** What the agent's tables (and the slot registry) hold now. */
  async state(): Promise<SecurityState> {
    const t = nftTableName(this.tag);
    const bridgeChains = new Set<string>();
    const inetChains = new Set<string>();
    const elements = new Map<string, Map<string | number, string>>();
    const slots = new Map<number, string>();
    const zones = new Map<string, number>();
    const list = async (family: string, table: string): Promise<NftObject[]> => {
      try {
        return (await this.run.nftJson("list", "table", family, table)).nftables as NftObject[];
      } catch (err) {
        if (err instanceof CommandError && /No such file or directory/.test(err.stderr)) return [];
        throw err;
      }
    };
    for (const family of ["bridge", "inet"]) {
      for (const o of await list(family, t)) {
        if (o.chain?.name) (family === "bridge" ? bridgeChains : inetChains).add(o.chain.name);
        if (o.map?.name === "v_zone") {
          for (const e of o.map.elem ?? []) {
            const [k, v] = e as [unknown, unknown];
            if (typeof k === "string" && typeof v === "number") zones.set(k, v);
          }
        } else if (o.map?.name) {
          const m = new Map<string | number, string>();
          for (const e of o.map.elem ?? []) {
            const [k, v] = e as [unknown, unknown];
            const target = jumpTarget(v);
            if (target) m.set(elemKey(k), target);
          }
          elements.set(o.map.name, m);
        }
      }
    }
    for (const o of await list("bridge", SLOT_TABLE)) {
      if (o.map?.name === SLOT_MAP) {
        for (const e of o.map.elem ?? []) {
          const [k, v] = e as [unknown, unknown];
          if (typeof k === "number" && typeof v === "string") slots.set(k, v);
        }
      }
    }
    return { bridgeChains, inetChains, elements, slots, zones };
  }

  private async base(): Promise<void> {
    if (this.based) return;
    await this.run.nft(baseScript(this.tag));
    this.based = true;
  }

  /**
   * Makes the port's security what its spec says: its chains replaced in
   * one transaction, or (port security off) removed.
   */
  async apply(port: PortSpec): Promise<void> {
    if (!port.portSecurity) {
      await this.remove(tapName(port.id));
      return;
    }
    await this.base();
    const tap = tapName(port.id);
    for (let attempt = 0; ; attempt++) {
      const state = await this.state();
      const slot = chooseSlot(tap, state.slots);
      try {
        await this.run.nft(portScript(this.tag, port, slot, state));
        return;
      } catch (err) {
        // Another agent on this kernel claimed the slot meanwhile: choose again.
        if (attempt < 5 && err instanceof CommandError && /File exists/.test(err.stderr)) {
          this.log.info({ tap, slot }, "security slot taken meanwhile; choosing another");
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Makes the conntrack zone of bridged traffic per bridge exactly `want`
   * (bridge → zone), so networks with the same addresses keep their
   * connections apart.
   */
  async syncZones(want: ReadonlyMap<string, number>): Promise<void> {
    await this.base();
    const script = zonesScript(this.tag, want, await this.state());
    if (script) await this.run.nft(script);
  }

  /** Removes a tap's chains, map elements and slot claim; resolves if there are none. */
  async remove(tap: string): Promise<void> {
    const script = removeScript(this.tag, tap, await this.state());
    if (script) await this.run.nft(script);
  }

  /** Removes every tap's security but those in `keep`. */
  async removeAllBut(keep: ReadonlySet<string>): Promise<void> {
    const state = await this.state();
    for (const tap of tapsIn(state)) {
      if (!keep.has(tap)) await this.remove(tap);
    }
  }

  /** Deletes the agent's two tables (and its slot claims): nothing of its security is left. */
  async removeTables(): Promise<void> {
    const state = await this.state();
    const t = nftTableName(this.tag);
    const mine = new Set(tapsIn(state));
    const lines: string[] = [];
    for (const [slot, owner] of state.slots) {
      if (mine.has(owner)) lines.push(`delete element bridge ${SLOT_TABLE} ${SLOT_MAP} { ${hex(slot)} }`);
    }
    if (state.bridgeChains.size > 0) lines.push(`delete table bridge ${t}`);
    if (state.inetChains.size > 0) lines.push(`delete table inet ${t}`);
    if (lines.length) await this.run.nft(`${lines.join("\n")}\n`);
    this.based = false;
  }
}

/** The tap's slot in the registry, else the first free one from its preferred slot. */
export function chooseSlot(tap: string, slots: ReadonlyMap<number, string>): number {
  for (const [slot, owner] of slots) if (owner === tap) return slot;
  const start = preferredSlot(tap);
  for (let i = 0; i < SLOT_COUNT; i++) {
    const slot = ((start - 1 + i) % SLOT_COUNT) + 1;
    if (!slots.has(slot)) return slot;
  }
  throw new RangeError("no free security slot on this kernel (65535 secured ports)");
}
