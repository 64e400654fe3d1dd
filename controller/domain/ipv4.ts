/**
 * IPv4 arithmetic for IPAM: addresses as unsigned 32-bit integers (as the
 * database stores them), CIDRs, ranges. Pure; every parser returns null on
 * anything that is not canonical, so callers name the bad field.
 */

/** "10.0.0.5" → 167772165; null unless four decimal octets without leading zeros. */
export function parseIpv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part.startsWith("0")) return null;
    const o = Number(part);
    if (o > 255) return null;
    n = n * 256 + o;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** An IPv4 network: its first (network) and last (broadcast) address and prefix length. */
export interface Cidr {
  readonly first: number;
  readonly last: number;
  readonly prefix: number;
}

/** "10.0.0.0/24"; null when malformed or when host bits are set. */
export function parseCidr(s: string): Cidr | null {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s);
  if (!m) return null;
  const addr = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (addr === null || prefix > 32 || (m[2]!.length > 1 && m[2]!.startsWith("0"))) return null;
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) return null;
  return { first: addr, last: addr + size - 1, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIpv4(c.first)}/${c.prefix}`;
}

/** The netmask of a prefix length, dotted ("255.255.255.0"). */
export function netmask(prefix: number): string {
  return formatIpv4(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
}

/** An inclusive range of addresses. */
export interface Range {
  readonly first: number;
  readonly last: number;
}

export function overlaps(a: Range, b: Range): boolean {
  return a.first <= b.last && b.first <= a.last;
}

export function contains(r: Range, addr: number): boolean {
  return addr >= r.first && addr <= r.last;
}

/**
 * The addresses of a subnet guests may have: all but the network and
 * broadcast addresses (for prefixes up to /30; /31 and /32 have none to
 * spare, as in Neutron).
 */
export function usable(c: Cidr): Range | null {
  if (c.prefix >= 31) return null;
  return { first: c.first + 1, last: c.last - 1 };
}

/** The default allocation pools: the usable range less the gateway. */
export function defaultPools(c: Cidr, gateway: number | null): Range[] {
  const u = usable(c);
  if (!u) return [];
  if (gateway === null || !contains(u, gateway)) return [u];
  const out: Range[] = [];
  if (gateway > u.first) out.push({ first: u.first, last: gateway - 1 });
  if (gateway < u.last) out.push({ first: gateway + 1, last: u.last });
  return out;
}

/** How many addresses the ranges hold. */
export function sizeOf(ranges: readonly Range[]): number {
  return ranges.reduce((n, r) => n + (r.last - r.first + 1), 0);
}
