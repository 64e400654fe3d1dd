/**
 * Real guests on a real network through the whole stack: two agents with
 * the libvirt driver (the two libvirtds of `scripts/libvirtd-hosts.sh`) and
 * the linux network driver, flat networks on two bridges this test makes
 * (with an address of this machine on each), the test guest of
 * `scripts/build-test-guest.sh` asking for its addresses by DHCP. A network
 * namespace plugged into the first bridge stands for another machine on
 * the network: traffic from this machine's own address to a guest is not
 * filtered by the guest's ingress rules (agent/network/README.md), traffic
 * from that namespace is.
 *
 * Host B's network is a namespace of its own (NOVAMESH_LIBVIRT_B_NETNS; its
 * agent runs the network driver there, --network-namespace), so the first
 * flat network spans both hosts as a physical segment would: a bridge of
 * the same name in B's namespace, joined to this machine's by a veth pair.
 * Each agent's tunnel address is the address of its libvirtd's URI (the
 * hosts' underlay), so a tenant (VXLAN) network reaches B only over that
 * underlay; a probe namespace on host A's bridge of it pings the guests
 * there. Runs when NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B,
 * NOVAMESH_LIBVIRT_B_NETNS and NOVAMESH_TEST_GUEST are set
 * (`npm run test:libvirt`), as root.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, describe, test } from "node:test";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { ServerStatus, type Server } from "../gen/novamesh/compute/v1/server.js";
import { Segmentation, Subnet } from "../gen/novamesh/network/v1/network.js";
import { Direction, SecurityGroupRule } from "../gen/novamesh/network/v1/security_group.js";
import { uriHost } from "../agent/drivers/libvirt/live-migration.js";
import { vxlanBridgeName, vxlanDeviceName } from "../agent/network/index.js";
import { registerTestGuest } from "../scripts/test-guest.js";
import { eventually, settled, withOnlyHost } from "./harness.js";
import { removeDomains } from "./libvirt-domains.js";
import { stack } from "./stack.js";

const run = promisify(execFile);
const A = process.env.NOVAMESH_LIBVIRT_A;
const B = process.env.NOVAMESH_LIBVIRT_B;
const BNS = process.env.NOVAMESH_LIBVIRT_B_NETNS;
const GUEST = process.env.NOVAMESH_TEST_GUEST;
const skip =
  A && B && BNS && GUEST
    ? process.getuid?.() === 0
      ? false
      : "needs root (bridges, namespaces, nftables)"
    : "NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B, NOVAMESH_LIBVIRT_B_NETNS and NOVAMESH_TEST_GUEST are not set (npm run test:libvirt)";
if (skip && process.env.NOVAMESH_LIBVIRT_REQUIRED === "1") throw new Error(skip);

const ip = (...args: string[]) => run("ip", args, { timeout: 10_000 });
/** `ip` in host B's network namespace. */
const ipB = (...args: string[]) => ip("-n", BNS!, ...args);
/** The nftables ruleset of this machine's namespace, or of host B's. */
const ruleset = async (ns?: string) =>
  (await run(ns ? "ip" : "nft", [...(ns ? ["netns", "exec", ns, "nft"] : []), "list", "ruleset"], { timeout: 10_000, maxBuffer: 64 << 20 })).stdout;
/** Resolves once `p` has, or has failed because what it removes is not there. */
const removed = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: { stderr?: string }) => {
      if (!/does not exist|Cannot find device|No such file or directory|Cannot remove namespace/.test(err.stderr ?? "")) throw err;
    },
  );
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
/** Whether link `name` exists here (or in host B's namespace), and the bridge it is on. */
const linkOf = async (name: string, ns?: string): Promise<{ master?: string } | undefined> =>
  (ns ? ip("-n", ns, "-j", "link", "show", "dev", name) : ip("-j", "link", "show", "dev", name)).then(
    (r) => (JSON.parse(r.stdout) as { master?: string }[])[0],
    (err: { stderr?: string }) => {
      if (/does not exist/.test(err.stderr ?? "")) return undefined;
      throw err;
    },
  );

describe("real guests on a real network (libvirt, linux network driver)", { skip }, () => {
  // Names and addresses of this run: bridges, the outside namespace, two /24s.
  const tag = randomBytes(3).toString("hex");
  // The segment of brA: its end here (`segA`) and in host B's namespace, on B's own bridge brA.
  // A probe namespace on the tenant (VXLAN) network, on host A's bridge of it (`probeOut`, `probeIn`).
  const [brA, brB, ns, vethOut, vethIn, segA, segB, probe, probeOut, probeIn] = ["a", "b", "c", "v", "w", "s", "t", "p", "q", "r"].map(
    (x) => `nmq${tag}${x}`,
  ) as [string, string, string, string, string, string, string, string, string, string];
  // 10.100-148.x.0/24 and 10.150-198.x.0/24: clear of the hosts' underlay (scripts/libvirtd-hosts.sh, 10.199.0.0/30).
  const o2 = 100 + (randomBytes(1)[0]! % 49);
  const o3 = randomBytes(1)[0]!;
  const netA = `10.${o2}.${o3}`;
  const netB = `10.${o2 + 50}.${o3}`;
  const netC = `10.${o2}.${(o3 + 1) % 256}`;
  /** The tenant network's id, once made (its bridge and VXLAN device are named after it). */
  let tenantNet = "";
  const uris = new Map<string, string>();
  const servers: string[] = [];
  const hostTags = new Map<string, string>();
  /** The taps of this run's ports (their slots in the registry are this run's). */
  const taps = new Set<string>();

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
        const network = ["--network-driver", "linux", "--network-host-tag", hostTag, "--tunnel-ip", uriHost(uri)!];
        if (name === "b") network.push("--network-namespace", BNS!);
        return { host, driverArgs: ["--driver", "libvirt", "--libvirt-uri", uri, "--live-migration-uri", uri, ...network] };
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
      await ipB("link", "add", brA, "type", "bridge");
      await ipB("link", "set", brA, "up");
      await ip("link", "add", segA, "type", "veth", "peer", "name", segB, "netns", BNS!);
      await ip("link", "set", segA, "master", brA, "up");
      await ipB("link", "set", segB, "master", brA, "up");
      ({ imageId } = await registerTestGuest(admin.images.raw, admin.images.metadata(), GUEST!, { name: `net-guest-${tag}` }));
      await admin.flavors.createFlavor({ flavor: { id: flavorId, name: flavorId, vcpus: 1, ramMb: 256, diskGb: 1, description: "", extraSpecs: {} } });
    },
    removeDir: true,
  });
  const { admin, alice, dir, hosts } = fx;
  const flavorId = `net.tiny.${tag}`;
  let imageId = "";

  // Whatever a failed run left: domains, DHCP servers, the bridges, the segment, the outside namespace.
  after(async () => {
    for (const uri of new Set(uris.values())) await removeDomains(uri, servers);
    const left = await dhcpLeftovers([...hostTags.values()]);
    for (const pid of left.pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch (err) {
        // It exited meanwhile.
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    }
    for (const n of left.namespaces) await removed(ip("netns", "del", n));
    await removed(ip("link", "del", vethOut));
    await removed(ip("link", "del", probeOut));
    await removed(ip("netns", "del", probe));
    if (tenantNet) {
      for (const dev of [vxlanDeviceName(tenantNet), vxlanBridgeName(tenantNet)]) {
        await removed(ip("link", "del", dev));
        await removed(ipB("link", "del", dev));
      }
    }
    await removed(ip("link", "del", segA));
    await removed(ip("netns", "del", ns));
    for (const br of [brA, brB]) await removed(ip("link", "del", br));
    await removed(ipB("link", "del", brA));
    // The agents' nftables tables outlive them (a restarted agent adopts them): removed here.
    for (const [host, hostTag] of hostTags) {
      const nft = host.endsWith("-b") ? ["ip", "netns", "exec", BNS!, "nft"] : ["nft"];
      for (const family of ["bridge", "inet"]) await removed(run(nft[0]!, [...nft.slice(1), "delete", "table", family, `nm_${hostTag}`]));
      // The slot registry, shared by every agent of the namespace: this run's slots go (a failed
      // run leaves ports plugged), the registry only when it holds no slot.
      const slots = await run(nft[0]!, [...nft.slice(1), "-j", "list", "map", "bridge", "nm_slots", "slots"]).then(
        (r) => JSON.parse(r.stdout) as { nftables: { map?: { elem?: [unknown, unknown][] } }[] },
        (err: { stderr?: string }) => {
          if (!/No such file or directory/.test(err.stderr ?? "")) throw err;
          return undefined;
        },
      );
      if (slots === undefined) continue;
      const elems = slots.nftables.flatMap((o) => o.map?.elem ?? []);
      const ours = elems.filter(([, tap]) => typeof tap === "string" && taps.has(tap));
      for (const [slot] of ours) await run(nft[0]!, [...nft.slice(1), "delete", "element", "bridge", "nm_slots", "slots", `{ ${String(slot)} }`]);
      if (elems.length === ours.length) await run(nft[0]!, [...nft.slice(1), "delete", "table", "bridge", "nm_slots"]);
    }
  });

  /**
   * What is left of the agents' DHCP servers: the namespaces of their host
   * tags, and the dnsmasq processes whose pid files are in this run's directory.
   */
  const dhcpLeftovers = async (tags: readonly string[]) => {
    const namespaces = (await ip("netns", "list")).stdout
      .split("\n")
      .map((l) => l.split(" ")[0] ?? "")
      .filter((n) => tags.some((t) => n.startsWith(`nmdhcp-${t}-`)));
    const pids: number[] = [];
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch((err: NodeJS.ErrnoException) => {
        // The process exited while the list was read.
        if (err.code === "ENOENT" || err.code === "ESRCH") return "";
        throw err;
      });
      const args = cmdline.split("\0");
      if (args[0]?.endsWith("dnsmasq") && args.some((a) => a.startsWith(`--pid-file=${dir}/`))) pids.push(Number(entry));
    }
    return { namespaces, pids };
  };

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
  /** Waits until `address` answers ping (from namespace `ns`): how long it took; rejects saying `why` it should have. */
  const pingsWithin = async (address: string, ms: number, ns?: string, why?: string) => {
    const t0 = Date.now();
    const what = `${address} answers ping${ns ? ` from namespace ${ns}` : ""}${why ? ` (${why})` : ""}`;
    await eventually(async () => pings(address, ns), { what, timeoutMs: ms, intervalMs: 200 });
    return Date.now() - t0;
  };

  test("two guests get their addresses by DHCP, security group rules take effect on them, a hot-plugged NIC is configured, a guest live-migrates to the other host and back and keeps answering, delete leaves nothing", async (t) => {
    const hostA = hosts[0]!;
    const net1 = (await admin.networks.createNetwork({ name: `flat-a-${tag}`, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: brA, projectId: "alice" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net1.id, cidr: `${netA}.0/24`, gatewayIp: `${netA}.1`, allocationPools: [{ start: `${netA}.10`, end: `${netA}.50` }] }) });
    const net2 = (await admin.networks.createNetwork({ name: `flat-b-${tag}`, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: brB, projectId: "alice" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net2.id, cidr: `${netB}.0/24`, noGateway: true, allocationPools: [{ start: `${netB}.10`, end: `${netB}.50` }] }) });
    // A tenant network: VXLAN between the hosts' tunnel addresses, over their underlay.
    const net3 = (await alice.networks.createNetwork({ name: `tenant-${tag}` })).network!;
    assert.equal(net3.segmentation, Segmentation.SEGMENTATION_VXLAN);
    tenantNet = net3.id;
    await alice.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net3.id, cidr: `${netC}.0/24`, noGateway: true, allocationPools: [{ start: `${netC}.10`, end: `${netC}.50` }] }) });

    const t0 = Date.now();
    const [g1, g2] = await withOnlyHost(admin, hostA, async () => {
      const networks = [net1, net3].map((n) => ({ networkId: n.id, portId: "", fixedIp: "" }));
      const made = await Promise.all(["net-1", "net-2"].map(async (name) => (await alice.servers.createServer({ name, flavorId, imageId, networks })).server!));
      servers.push(...made.map((s) => s.id));
      for (const p of made.flatMap((s) => s.interfaces)) taps.add(tapOf(p.portId));
      return Promise.all(made.map((s) => settled(admin, s.id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000)));
    });
    for (const p of [...g1!.interfaces, ...g2!.interfaces]) taps.add(tapOf(p.portId));
    const [a1, a2] = [addressOn(g1!, net1.id), addressOn(g2!, net1.id)];
    assert.match(a1, new RegExp(`^${netA.replace(/\./g, "\\.")}\\.\\d+$`));
    assert.notEqual(a1, a2);
    const [c1, c2] = [addressOn(g1!, net3.id), addressOn(g2!, net3.id)];
    await Promise.all([
      consoleAddress(g1!.id, "eth0", `${a1}/24`),
      consoleAddress(g2!.id, "eth0", `${a2}/24`),
      consoleAddress(g1!.id, "eth1", `${c1}/24`),
      consoleAddress(g2!.id, "eth1", `${c2}/24`),
    ]);
    t.diagnostic(`both guests ACTIVE and configured by DHCP (${a1} and ${c1}, ${a2} and ${c2}) ${Date.now() - t0} ms after CreateServer`);
    // The probe: a namespace on host A's bridge of the tenant network (as Neutron's debug probes are).
    await ip("netns", "add", probe);
    await ip("link", "add", probeOut, "mtu", String(net3.mtu), "type", "veth", "peer", "name", probeIn, "netns", probe);
    await ip("link", "set", probeOut, "master", vxlanBridgeName(net3.id), "up");
    await ip("-n", probe, "addr", "add", `${netC}.250/24`, "dev", probeIn);
    await ip("-n", probe, "link", "set", probeIn, "up");

    // This machine reaches both at once; the outside namespace only once ICMP is let in.
    for (const a of [a1, a2]) await pingsWithin(a, 10_000);
    assert.equal(await pings(a1, ns), false, "the default group lets in no ICMP from outside the group");
    const group = (await alice.securityGroups.listSecurityGroups({})).securityGroups.find((g) => g.name === "default")!;
    await alice.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: group.id, direction: Direction.DIRECTION_INGRESS, protocol: "icmp" }) });
    const ruleMs = await pingsWithin(a1, 10_000, ns);
    // The hosts re-plug a group's ports one after another: the second follows within the same few seconds.
    await pingsWithin(a2, 10_000, ns, "the rule holds for every port of the group");
    t.diagnostic(`ICMP from outside answered ${ruleMs} ms after CreateSecurityGroupRule`);
    await pingsWithin(c2, 10_000, probe, "the probe reaches the guest on the tenant network");

    // A third network, hot-plugged: the guest's DHCP client configures eth2.
    await alice.servers.attachInterface({ id: g1!.id, networkId: net2.id });
    const attached = await settled(admin, g1!.id, ServerStatus.SERVER_STATUS_ACTIVE, 60_000);
    for (const p of attached.interfaces) taps.add(tapOf(p.portId));
    const b1 = addressOn(attached, net2.id);
    assert.ok(b1, JSON.stringify(attached.interfaces));
    await consoleAddress(g1!.id, "eth2", `${b1}/24`);
    await pingsWithin(b1, 10_000);

    // Live migration to host B, whose network is its own namespace: the flat network's segment
    // reaches B's bridge of that name, the tap is made there, B's rules take over the port.
    const hostB = hosts[1]!;
    const tap2 = tapOf(g2!.interfaces.find((i) => i.networkId === net1.id)!.portId);
    const migrate = async (to: string) => {
      const t1 = Date.now();
      const lm = await admin.servers.liveMigrateServer({ id: g2!.id, host: to });
      const op = (await admin.operations.waitOperation({ name: lm.operation!.name, timeoutSeconds: 120 })).operation!;
      assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, op.error?.message);
      const moved = await settled(admin, g2!.id, ServerStatus.SERVER_STATUS_ACTIVE, 60_000);
      assert.equal(moved.host, to);
      assert.deepEqual([addressOn(moved, net1.id), addressOn(moved, net3.id)], [a2, c2], "the guest keeps its addresses");
      const lmMs = Date.now() - t1;
      const pingMs = await pingsWithin(a2, 15_000);
      t.diagnostic(`live migration to ${to}: SUCCEEDED in ${lmMs} ms, the guest answered ping ${pingMs} ms later`);
    };
    await migrate(hostB);
    assert.equal(await linkOf(tap2), undefined, `${tap2} is gone from host A`);
    assert.equal((await linkOf(tap2, BNS))?.master, brA, `${tap2} is on host B's ${brA}`);
    assert.ok(!(await ruleset()).includes(tap2), `host A's tables name ${tap2} no more`);
    assert.ok((await ruleset(BNS)).includes(`i_${tap2}`), `host B's tables hold ${tap2}'s ingress chain`);
    // Through the segment to host B's bridge and B's rules for the port (ICMP is let in since the rule above).
    await pingsWithin(a2, 10_000, ns, "the other machine on the network reaches the guest on host B");
    // The tenant network's only way to host B is VXLAN from B's tunnel address, over the underlay.
    const [vxB] = JSON.parse((await ipB("-d", "-j", "link", "show", "dev", vxlanDeviceName(net3.id))).stdout) as { linkinfo?: { info_data?: { local?: string } } }[];
    assert.equal(vxB?.linkinfo?.info_data?.local, uriHost(B!), "host B's VXLAN device is on its tunnel address");
    await pingsWithin(c2, 10_000, probe, "the probe on host A reaches the guest on host B over VXLAN");

    // And back to host A.
    await migrate(hostA);
    assert.equal((await linkOf(tap2))?.master, brA, `${tap2} is on host A's ${brA} again`);
    assert.equal(await linkOf(tap2, BNS), undefined, `${tap2} is gone from host B`);
    assert.ok(!(await ruleset(BNS)).includes(tap2), `host B's tables name ${tap2} no more`);
    await pingsWithin(a2, 10_000, ns, "the other machine on the network reaches the guest back on host A");
    await pingsWithin(c2, 10_000, probe, "the probe reaches the guest back on host A");
    assert.equal(await linkOf(vxlanBridgeName(net3.id), BNS), undefined, "host B removed the tenant network's bridge it no longer uses");
    await ip("link", "del", probeOut);

    // Delete: no tap, no DHCP host entry, no nftables chain of their ports, on either host.
    const ports = [...g1!.interfaces, ...g2!.interfaces, ...attached.interfaces.filter((i) => i.networkId === net2.id)];
    for (const p of ports) assert.ok(await linkOf(tapOf(p.portId)), `${tapOf(p.portId)} is there while the server runs`);
    for (const s of [g1!, g2!]) await alice.servers.deleteServer({ id: s.id });
    await eventually(async () => (await alice.servers.listServers({})).servers.length === 0, { what: "servers deleted", timeoutMs: 60_000 });
    for (const p of ports) {
      assert.equal(await linkOf(tapOf(p.portId)), undefined, `${tapOf(p.portId)} is gone`);
      assert.equal(await linkOf(tapOf(p.portId), BNS), undefined, `${tapOf(p.portId)} is not on host B`);
    }
    for (const rules of [await ruleset(), await ruleset(BNS)]) {
      for (const p of ports) assert.ok(!rules.includes(tapOf(p.portId)), `no nftables chain or element names ${tapOf(p.portId)}`);
    }
    for (const net of [net1, net2, net3]) {
      for (const host of [hostA, hostB]) {
        const hostsFile = join(dir, host, "network", "dhcp", net.id, "hosts");
        const entries = await readFile(hostsFile, "utf8").catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return "";
          throw err;
        });
        for (const p of ports) assert.ok(!entries.toLowerCase().includes(p.macAddress.toLowerCase()), `${hostsFile} has no entry for ${p.macAddress}`);
      }
    }
    for (const dev of [vxlanBridgeName(net3.id), vxlanDeviceName(net3.id)]) {
      assert.equal(await linkOf(dev), undefined, `${dev} is gone from host A`);
      assert.equal(await linkOf(dev, BNS), undefined, `${dev} is not on host B`);
    }
    // No port left on a network: no DHCP server of either agent either.
    assert.deepEqual(await dhcpLeftovers([...hostTags.values()]), { namespaces: [], pids: [] }, "no DHCP namespace or dnsmasq is left");
    assert.equal(await pings(a1), false, "the deleted guest's address no longer answers");
  });
});
