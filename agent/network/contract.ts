/**
 * The network driver contract as tests: the fake and linux drivers run this
 * one suite, so they promise the same things (see `driver.ts`).
 *
 *   networkDriverContract("fake", { make: async (o) => new FakeNetworkDriver(o), … });
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DriverError } from "../drivers/errors.js";
import type { NetworkDriver } from "./driver.js";
import { testNetwork, testPort } from "./test-ports.js";

/** How the suite makes drivers. */
export interface NetworkContractKit {
  /**
   * A fresh driver of one host, with this tunnel address (VXLAN networks
   * need one); the suite closes it. Drivers made by one call of `make` must
   * not share state.
   */
  make(options: { readonly tunnelIp: string }): Promise<NetworkDriver>;
  /** A new driver on the state of `driver`, as after an agent restart. */
  restart(driver: NetworkDriver): Promise<NetworkDriver>;
  /** Removes whatever `driver` made (after each test). */
  cleanup(driver: NetworkDriver): Promise<void>;
  /** A bridge name that exists on the host, for `flat` networks. */
  readonly physicalBridge: string;
  /** Why the suite cannot run here (it is skipped), or undefined. */
  readonly skip?: string;
}

function code(c: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof DriverError, `a DriverError, got ${String(err)}`);
    assert.equal(err.code, c);
    return true;
  };
}

/** Registers the contract tests of a network driver with node:test. */
export function networkDriverContract(name: string, kit: NetworkContractKit): void {
  const withDriver = (title: string, body: (d: NetworkDriver) => Promise<void>, tunnelIp = "192.0.2.10") =>
    test(title, { skip: kit.skip }, async (t) => {
      const d = await kit.make({ tunnelIp });
      t.after(async () => {
        await kit.cleanup(d);
        await d.close();
      });
      await body(d);
    });

  describe(`network driver contract: ${name}`, () => {
    withDriver("vif names the tap, bridge and MTU from ids alone (Linux names, 15 characters at most)", async (d) => {
      const net = testNetwork(1, { id: "5f0c2a1e-9b7d-4c3e-8a6f-0123456789ab" });
      const port = testPort(net, 10, { id: "0d9e8f7a-6b5c-4d3e-2f1a-abcdefabcdef" });
      const vif = d.vif(port);
      assert.deepEqual(vif, { portId: port.id, mac: port.mac, bridge: "nmbr5f0c2a1e9b", tap: "tap0d9e8f7a6b5", mtu: 1450 });
      const flat = d.vif(testPort(testNetwork(2, { segmentation: "flat", physicalBridge: "br-phys" }), 10));
      assert.equal(flat.bridge, "br-phys");
    });

    withDriver("plug returns the VIFs, plugged shows the ports; plugging again changes nothing; other ports stay", async (d) => {
      const net = testNetwork(3);
      const a = testPort(net, 10);
      const b = testPort(net, 11);
      assert.deepEqual(await d.plug("i1", [a]), [d.vif(a)]);
      await d.plug("i1", [a]);
      await d.plug("i1", [b]);
      const plugged = await d.plug("i2", [testPort(net, 12)]).then(() => d.plugged());
      assert.deepEqual(plugged.get("i1")?.map((p) => p.id), [a.id, b.id]);
      assert.equal(plugged.get("i2")?.length, 1);
      const changed = { ...a, securityRules: [{ direction: "ingress" as const, protocol: "icmp", portMin: -1, portMax: -1, remoteCidr: "", remoteAddresses: null }] };
      await d.plug("i1", [changed]);
      assert.deepEqual((await d.plugged()).get("i1")?.find((p) => p.id === a.id)?.securityRules, changed.securityRules, "a replug updates the port");
    });

    withDriver("unplug removes the ports named, or all; unknown instances and ports resolve", async (d) => {
      const net = testNetwork(4);
      const a = testPort(net, 10);
      const b = testPort(net, 11);
      await d.plug("i1", [a, b]);
      await d.unplug("i1", [a.id, "no-such-port"]);
      assert.deepEqual((await d.plugged()).get("i1")?.map((p) => p.id), [b.id]);
      await d.unplug("i1");
      assert.equal((await d.plugged()).has("i1"), false);
      await d.unplug("i1");
      await d.unplug("never-plugged", ["x"]);
    });

    withDriver(
      "a VXLAN network on a host without a tunnel address is refused with NO_TUNNEL_IP, and nothing is plugged",
      async (d) => {
        assert.equal(d.tunnelIp, "");
        await assert.rejects(d.plug("i1", [testPort(testNetwork(5), 10)]), code("NO_TUNNEL_IP"));
        assert.equal((await d.plugged()).size, 0);
      },
      "",
    );

    withDriver("a flat network whose bridge is not on the host is refused with NETWORK_BRIDGE_MISSING", async (d) => {
      const net = testNetwork(6, { segmentation: "flat", physicalBridge: "nmnosuchbr0" });
      await assert.rejects(d.plug("i1", [testPort(net, 10)]), (err) => code("NETWORK_BRIDGE_MISSING")(err) && !(err as DriverError).retryable);
      assert.equal((await d.plugged()).size, 0);
    });

    withDriver("a flat network on the operator's bridge plugs", async (d) => {
      const net = testNetwork(7, { segmentation: "flat", physicalBridge: kit.physicalBridge, vni: 0 });
      const port = testPort(net, 10);
      assert.equal((await d.plug("i1", [port]))[0]?.bridge, kit.physicalBridge);
      await d.unplug("i1");
    });

    withDriver("after a restart the new driver knows what is plugged; reconcile removes the instances not kept", async (d) => {
      const net = testNetwork(8);
      await d.plug("keep", [testPort(net, 10)]);
      await d.plug("gone", [testPort(net, 11)]);
      await d.setPeers(["192.0.2.11"]);
      const again = await kit.restart(d);
      try {
        assert.deepEqual([...(await again.plugged()).keys()].sort(), ["gone", "keep"]);
        await again.reconcile(["keep", "unknown"]);
        assert.deepEqual([...(await again.plugged()).keys()], ["keep"]);
      } finally {
        await again.close();
      }
      assert.deepEqual([...(await (await kit.restart(d)).plugged()).keys()], ["keep"], "reconcile's result is kept on disk");
    });
  });
}
