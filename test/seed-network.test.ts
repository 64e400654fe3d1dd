import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Segmentation } from "../gen/novamesh/network/v1/network.js";
import { PUBLIC_NETWORK, seedPublicNetwork } from "../scripts/seed-network.js";
import { stack } from "./stack.js";

describe("the all-in-one's network seed", () => {
  const fx = stack({ name: "seed-network", members: ["alice"], images: [] });
  const { admin, alice } = fx;

  test("registers the shared flat network public once, and every project sees it", async () => {
    const first = await seedPublicNetwork(admin.networks.raw, admin.networks.metadata());
    assert.deepEqual(first.actions.map((a) => a.split(" ").slice(0, 2).join(" ")), ["created network", "created subnet"]);
    const again = await seedPublicNetwork(admin.networks.raw, admin.networks.metadata());
    assert.deepEqual(again.actions, [`kept network ${first.networkId}`, `kept subnet ${first.subnetId}`]);

    const seen = (await alice.networks.listNetworks({})).networks;
    assert.deepEqual(seen.map((n) => [n.name, n.shared, n.segmentation]), [["public", true, Segmentation.SEGMENTATION_FLAT]]);
    const subnet = (await alice.networks.getSubnet({ id: first.subnetId })).subnet!;
    assert.deepEqual(
      [subnet.cidr, subnet.gatewayIp, subnet.allocationPools.map((p) => [p.start, p.end]), subnet.enableDhcp],
      [PUBLIC_NETWORK.cidr, PUBLIC_NETWORK.gateway, [[PUBLIC_NETWORK.pool.start, PUBLIC_NETWORK.pool.end]], true],
    );
  });

  test("a shared network named public that is something else is reported, not changed", async () => {
    const { networkId } = await seedPublicNetwork(admin.networks.raw, admin.networks.metadata());
    await admin.networks.deleteNetwork({ id: networkId });
    const other = (await admin.networks.createNetwork({ name: "public", shared: true })).network!;
    await assert.rejects(seedPublicNetwork(admin.networks.raw, admin.networks.metadata()), /not flat on bridge novamesh0/);
    assert.equal((await admin.networks.getNetwork({ id: other.id })).network!.segmentation, Segmentation.SEGMENTATION_VXLAN);
  });
});
