/**
 * Real guests on a real network through the whole stack: two agents with
 * the libvirt driver (the two libvirtds of `scripts/libvirtd-hosts.sh`) and
 * the linux network driver, flat networks on two bridges this test makes
 * (with an address of this machine on each), the test guest of
 * `scripts/build-test-guest.sh` asking for its addresses by DHCP. A network
 * namespace plugged into the first bridge stands for another machine on
 * the network: traffic from this machine's own address to a guest is not
 * filtered by the guest's ingress rules (agent/network/README.md), traffic
 * from that namespace is. Runs when NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B
 * and NOVAMESH_TEST_GUEST are set (`npm run test:libvirt`), as root.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, describe, test } from "node:test";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { ServerStatus, type Server } from "../gen/novamesh/compute/v1/server.js";
import { Segmentation, Subnet } from "../gen/novamesh/network/v1/network.js";
import { Direction, SecurityGroupRule } from "../gen/novamesh/network/v1/security_group.js";
import { loadLibvirt } from "../agent/drivers/libvirt/binding/index.js";
import * as C from "../agent/drivers/libvirt/binding/constants.js";
import { registerTestGuest } from "../scripts/test-guest.js";
import { eventually, settled, withOnlyHost } from "./harness.js";
import { stack } from "./stack.js";

const run = promisify(execFile);
const A = process.env.NOVAMESH_LIBVIRT_A;
const B = process.env.NOVAMESH_LIBVIRT_B;
const GUEST = process.env.NOVAMESH_TEST_GUEST;
const skip = A && B && GUEST ? (process.getuid?.() === 0 ? false : "needs root (bridges, namespaces, nftables)") : "NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B and NOVAMESH_TEST_GUEST are not set (npm run test:libvirt)";
if (skip && process.env.NOVAMESH_LIBVIRT_REQUIRED === "1") throw new Error(skip);

const ip = (...args: string[]) => run("ip", args, { timeout: 10_000 });
/** One ICMP echo from this machine (or from namespace `ns`), one second to answer. */
const pings = async (address: string, ns?: string): Promise<boolean> => {
  const cmd = ["busybox", "ping", "-c1", "-W1", address];
  try {
    await (ns ? run("ip", ["netns", "exec", ns, ...cmd], { timeout: 5000 }) : run(cmd[0]!, cmd.slice(1), { timeout: 5000 }));
    return true;
  } catch (err) {
    // busybox ping exits 1 when no reply came; anything else is a broken test set-up.
    if ((err as { code?: unknown }).code === 1) return false;
    throw err;
  }
};
const tapOf = (portId: string) => `tap${portId.replace(/-/g, "").slice(0, 11)}`;
const linkExists = async (name: string) =>
  ip("link", "show", "dev", name).then(
    () => true,
    (err: { stderr?: string }) => {
      if (/does not exist/.test(err.stderr ?? "")) return false;
      throw err;
    },
  );

describe("real guests on a real network (libvirt, linux network driver)", { skip }, () => {
  // Names and addresses of this run: bridges, the outside namespace, two /24s.
  const tag = randomBytes(3).toString("hex");
  const [brA, brB, ns, vethOut, vethIn] = ["a", "b", "c", "v", "w"].map((x) => `nmq${tag}${x}`) as [string, string, string, string, string];
  const o2 = 100 + (randomBytes(1)[0]! % 50);
  const o3 = randomBytes(1)[0]!;
  const netA = `10.${o2}.${o3}`;
  const netB = `10.${o2 + 50}.${o3}`;
  const uris = new Map<string, string>();
  const servers: string[] = [];
  const hostTags = new Map<string, string>();

  const fx = stack({
    name: "libvirt-network",
    controller: { reportIntervalSeconds: 3600, serviceDownTimeSeconds: 7200 },
    members: ["alice"],
    images: [],
    agents: ({ id }) =>
      ([["a", A!], ["b", B!]] as const).map(([name, uri]) => {
        const host = `qnet${id}-${name}`;
        const hostTag = `${tag.slice(0, 3)}${name}`;
        uris.set(host, uri);
        hostTags.set(host, hostTag);
        return { host, driverArgs: ["--driver", "libvirt", "--libvirt-uri", uri, "--live-migration-uri", uri, "--network-driver", "linux", "--network-host-tag", hostTag] };
      }),
    beforeAgents: async () => {
      for (const [br, net] of [[brA, netA], [brB, netB]] as const) {
        await ip("link", "add", br, "type", "bridge");
        await ip("addr", "add", `${net}.1/24`, "dev", br);
        await ip("link", "set", br, "up");
      }
      await ip("netns", "add", ns);
      await ip("link", "add", vethOut, "type", "veth", "peer", "name", vethIn);
      await ip("link", "set", vethIn, "netns", ns);
      await ip("link", "set", vethOut, "master", brA, "up");
      await ip("-n", ns, "addr", "add", `${netA}.2/24`, "dev", vethIn);
      await ip("-n", ns, "link", "set", vethIn, "up");
      await ip("-n", ns, "link", "set", "lo", "up");
      ({ imageId } = await registerTestGuest(admin.images.raw, admin.images.metadata(), GUEST!, { name: `net-guest-${tag}` }));
      await admin.flavors.createFlavor({ flavor: { id: flavorId, name: flavorId, vcpus: 1, ramMb: 256, diskGb: 1, description: "", extraSpecs: {} } });
    },
    removeDir: true,
  });
  const { admin, alice, dir, hosts } = fx;
  const flavorId = `net.tiny.${tag}`;
  let imageId = "";

  // Whatever a failed run left: domains, the bridges, the outside namespace.
  after(async () => {
    for (const uri of new Set(uris.values())) await removeDomains(uri, servers);
    await ip("link", "del", vethOut).catch(() => undefined);
    await ip("netns", "del", ns).catch(() => undefined);
    for (const br of [brA, brB]) await ip("link", "del", br).catch(() => undefined);
    // The agents' nftables tables outlive them (a restarted agent adopts them): removed here.
    for (const hostTag of hostTags.values()) {
      for (const family of ["bridge", "inet"]) await run("nft", ["delete", "table", family, `nm_${hostTag}`]).catch(() => undefined);
    }
    // The slot registry, shared by every agent of this kernel: removed only when it holds no slot.
    const slots = await run("nft", ["-j", "list", "map", "bridge", "nm_slots", "slots"]).then((r) => r.stdout, () => undefined);
    if (slots !== undefined && !/"elem"/.test(slots)) await run("nft", ["delete", "table", "bridge", "nm_slots"]);
  });

  const consoleOf = async (id: string) => (await admin.servers.getConsoleOutput({ id, length: 0 })).output;
  /** The address the guest's console says its interface `ifname` got by DHCP. */
  const consoleAddress = (id: string, ifname: string, expected: string) =>
    eventually(
      async () => {
        const all = [...(await consoleOf(id)).matchAll(new RegExp(`novamesh-test-guest: address ${ifname}=(\\S+)`, "g"))];
        return all.at(-1)?.[1] === expected ? expected : undefined;
      },
      { what: `${ifname} of ${id} configured with ${expected} by DHCP`, timeoutMs: 60_000, intervalMs: 500 },
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}; the console ends with:\n${(await consoleOf(id)).slice(-1200)}`);
    });
  const addressOn = (s: Server, networkId: string) => s.interfaces.find((i) => i.networkId === networkId)?.ipAddresses[0] ?? "";
  const pingsWithin = async (address: string, ms: number, ns?: string) => {
    const t0 = Date.now();
    await eventually(async () => pings(address, ns), { what: `${address} answers ping${ns ? " from the outside namespace" : ""}`, timeoutMs: ms, intervalMs: 200 });
    return Date.now() - t0;
  };

  test("two guests get their addresses by DHCP, security group rules take effect on them, a hot-plugged NIC is configured, delete leaves nothing", async (t) => {
    const hostA = hosts[0]!;
    const net1 = (await admin.networks.createNetwork({ name: `flat-a-${tag}`, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: brA, projectId: "alice" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net1.id, cidr: `${netA}.0/24`, gatewayIp: `${netA}.1`, allocationPools: [{ start: `${netA}.10`, end: `${netA}.50` }] }) });
    const net2 = (await admin.networks.createNetwork({ name: `flat-b-${tag}`, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: brB, projectId: "alice" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net2.id, cidr: `${netB}.0/24`, noGateway: true, allocationPools: [{ start: `${netB}.10`, end: `${netB}.50` }] }) });

    const t0 = Date.now();
    const [g1, g2] = await withOnlyHost(admin, hostA, async () => {
      const made = await Promise.all(["net-1", "net-2"].map(async (name) => (await alice.servers.createServer({ name, flavorId, imageId, networks: [{ networkId: net1.id, portId: "", fixedIp: "" }] })).server!));
      servers.push(...made.map((s) => s.id));
      return Promise.all(made.map((s) => settled(admin, s.id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000)));
    });
    const [a1, a2] = [addressOn(g1!, net1.id), addressOn(g2!, net1.id)];
    assert.match(a1, new RegExp(`^${netA.replace(/\./g, "\\.")}\\.\\d+$`));
    assert.notEqual(a1, a2);
    await Promise.all([consoleAddress(g1!.id, "eth0", `${a1}/24`), consoleAddress(g2!.id, "eth0", `${a2}/24`)]);
    t.diagnostic(`both guests ACTIVE and configured by DHCP (${a1}, ${a2}) ${Date.now() - t0} ms after CreateServer`);

    // This machine reaches both at once; the outside namespace only once ICMP is let in.
    for (const a of [a1, a2]) assert.ok(await pingsWithin(a, 10_000) >= 0);
    assert.equal(await pings(a1, ns), false, "the default group lets in no ICMP from outside the group");
    const group = (await alice.securityGroups.listSecurityGroups({})).securityGroups.find((g) => g.name === "default")!;
    await alice.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: group.id, direction: Direction.DIRECTION_INGRESS, protocol: "icmp" }) });
    const ruleMs = await pingsWithin(a1, 10_000, ns);
    // The hosts re-plug a group's ports one after another: the second follows within the same few seconds.
    assert.ok((await pingsWithin(a2, 10_000, ns)) >= 0, "the rule holds for every port of the group");
    t.diagnostic(`ICMP from outside answered ${ruleMs} ms after CreateSecurityGroupRule`);

    // A second network, hot-plugged: the guest's DHCP client configures eth1.
    await alice.servers.attachInterface({ id: g1!.id, networkId: net2.id });
    const attached = await settled(admin, g1!.id, ServerStatus.SERVER_STATUS_ACTIVE, 60_000);
    const b1 = addressOn(attached, net2.id);
    assert.ok(b1, JSON.stringify(attached.interfaces));
    await consoleAddress(g1!.id, "eth1", `${b1}/24`);
    await pingsWithin(b1, 10_000);

    // Live migration between the two libvirtds of this machine: they share one kernel, so the
    // target's tap (named after the port, as on the source) cannot be made while the source's
    // exists. libvirt refuses before anything is copied; the guest runs on where it was and
    // still answers at its address (agent/network/README.md, Limitations).
    const lm = await admin.servers.liveMigrateServer({ id: g2!.id });
    const lmOp = (await admin.operations.waitOperation({ name: lm.operation!.name, timeoutSeconds: 120 })).operation!;
    assert.equal(lmOp.state, OperationState.OPERATION_STATE_FAILED);
    assert.match(lmOp.error?.message ?? "", new RegExp(`${tapOf(g2!.interfaces[0]!.portId)} interface already exists`));
    const stayed = await settled(admin, g2!.id, ServerStatus.SERVER_STATUS_ACTIVE, 60_000);
    assert.equal(stayed.host, hostA);
    assert.ok(await pingsWithin(a2, 10_000) >= 0, "after the failed migration the guest still answers at its address");

    // Delete: no tap, no DHCP host entry, no nftables chain of their ports.
    const ports = [...g1!.interfaces, ...g2!.interfaces, ...attached.interfaces.filter((i) => i.networkId === net2.id)];
    for (const p of ports) assert.ok(await linkExists(tapOf(p.portId)), `${tapOf(p.portId)} is there while the server runs`);
    for (const s of [g1!, g2!]) await alice.servers.deleteServer({ id: s.id });
    await eventually(async () => (await alice.servers.listServers({})).servers.length === 0, { what: "servers deleted", timeoutMs: 60_000 });
    for (const p of ports) assert.equal(await linkExists(tapOf(p.portId)), false, `${tapOf(p.portId)} is gone`);
    const ruleset = (await run("nft", ["list", "ruleset"], { timeout: 10_000, maxBuffer: 64 << 20 })).stdout;
    for (const p of ports) assert.ok(!ruleset.includes(tapOf(p.portId)), `no nftables chain or element names ${tapOf(p.portId)}`);
    for (const net of [net1, net2]) {
      const hostsFile = join(dir, hostA, "network", "dhcp", net.id, "hosts");
      const entries = await readFile(hostsFile, "utf8").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return "";
        throw err;
      });
      for (const p of ports) assert.ok(!entries.toLowerCase().includes(p.macAddress.toLowerCase()), `${hostsFile} has no entry for ${p.macAddress}`);
    }
    assert.equal(await pings(a1), false, "the deleted guest's address no longer answers");
  });
});

/** Destroys and undefines the domains of `ids` on the libvirtd at `uri`. */
async function removeDomains(uri: string, ids: string[]): Promise<void> {
  const conn = await loadLibvirt().open(uri);
  try {
    for (const d of await conn.listAllDomains(0)) {
      const name = await d.getName();
      if (!ids.some((id) => name === `novamesh-${id}`)) continue;
      await d.destroy().catch(() => undefined);
      await d.undefineFlags(C.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE).catch(() => undefined);
    }
  } finally {
    await conn.close();
  }
}
