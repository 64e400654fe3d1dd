import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { networkDriverContract } from "../contract.js";
import { testNetwork, testPort } from "../test-ports.js";
import { FakeNetworkDriver } from "./fake-network-driver.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "fake-network-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
const paths = new WeakMap<object, string>();
networkDriverContract("fake", {
  physicalBridge: "br-phys",
  make: async ({ tunnelIp }) => {
    const statePath = join(dir, `state-${++n}.json`);
    const d = new FakeNetworkDriver({ tunnelIp, statePath, physicalBridges: ["br-phys"] });
    paths.set(d, statePath);
    return d;
  },
  restart: async (d) => {
    const statePath = paths.get(d);
    const again = new FakeNetworkDriver({ tunnelIp: d.tunnelIp, statePath, physicalBridges: ["br-phys"] });
    if (statePath) paths.set(again, statePath);
    return again;
  },
  cleanup: async () => undefined,
});

describe("FakeNetworkDriver", () => {
  test("a network is present while a port of it is plugged; peers leave out the host's own address", async () => {
    const d = new FakeNetworkDriver({ tunnelIp: "192.0.2.1" });
    const net = testNetwork(1);
    const a = testPort(net, 10);
    await d.plug("i1", [a]);
    await d.plug("i2", [testPort(net, 11)]);
    assert.deepEqual([...(await d.networks()).keys()], [net.id]);
    await d.unplug("i1");
    assert.deepEqual([...(await d.networks()).keys()], [net.id], "another instance still uses it");
    await d.unplug("i2");
    assert.equal((await d.networks()).size, 0);
    await d.setPeers(["192.0.2.1", "192.0.2.2", "192.0.2.2"]);
    assert.deepEqual(await d.peers(), ["192.0.2.2"]);
  });

  test("without physicalBridges any flat bridge is accepted", async () => {
    const d = new FakeNetworkDriver();
    const [vif] = await d.plug("i1", [testPort(testNetwork(2, { segmentation: "flat", physicalBridge: "br-any" }), 10)]);
    assert.equal(vif?.bridge, "br-any");
  });
});

test("a port plugged again (a refresh) keeps its place among the instance's ports", async () => {
  const d = new FakeNetworkDriver({ tunnelIp: "192.0.2.1" });
  const net = testNetwork(1);
  const a = testPort(net, 1, { id: "port-a" });
  const b = testPort(net, 2, { id: "port-b" });
  await d.plug("i", [a]);
  await d.plug("i", [b]);
  await d.plug("i", [a]);
  assert.deepEqual((await d.plugged()).get("i")?.map((p) => p.id), ["port-a", "port-b"]);
});
