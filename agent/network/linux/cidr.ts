/** IPv4 CIDR arithmetic the DHCP and security code needs. */

/** An IPv4 address as an unsigned 32-bit number; throws a RangeError if it is not one. */
export function ipv4ToNumber(address: string): number {
  const parts = address.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new RangeError(`not an IPv4 address: "${address}"`);
  }
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

/** A number as a dotted IPv4 address. */
export function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** A parsed "a.b.c.d/len". */
export interface Cidr {
  /** The network address. */
  readonly network: string;
  readonly prefixLength: number;
  /** The netmask, dotted. */
  readonly netmask: string;
}

/** Parses an IPv4 CIDR; throws a RangeError if it is not one. */
export function parseCidr(cidr: string): Cidr {
  const [address, len, extra] = cidr.split("/");
  const prefixLength = Number(len);
  if (extra !== undefined || address === undefined || !/^\d{1,2}$/.test(len ?? "") || prefixLength > 32) {
    throw new RangeError(`not an IPv4 CIDR: "${cidr}"`);
  }
  const mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  const network = (ipv4ToNumber(address) & mask) >>> 0;
  return { network: numberToIpv4(network), prefixLength, netmask: numberToIpv4(mask) };
}

/** Whether `address` (IPv4) is in `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const mask = ipv4ToNumber(cidr.netmask);
  return ((ipv4ToNumber(address) & mask) >>> 0) === ipv4ToNumber(cidr.network);
}
