/**
 * User data and the config drive through the whole stack on fake hosts:
 * what CreateServer is given reaches the drive every host makes for the
 * guest (the fake driver keeps the drive's files, made by the same code
 * the libvirt driver writes its ISO from), and is made again the same
 * wherever the server goes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { Segmentation, Subnet } from "../gen/novamesh/network/v1/network.js";
import { configDriveOf } from "../agent/drivers/fake/domain-store.js";
import { failure } from "./harness.js";
import { stack } from "./stack.js";

describe("config drive", () => {
  const fx = stack({
    name: "config-drive",
    members: ["alice"],
    controller: { allowResizeToSameHost: false },
    agents: ({ id }) => [{ host: `cd${id}`, hosts: 2 }],
  });
  const { admin, alice, imageId, dir, settled } = fx;
  const driveOf = async (serverId: string) => {
    const s = (await admin.servers.getServer({ id: serverId })).server!;
    const files = await configDriveOf(join(dir, s.host, "fake-domains.json"), serverId);
    assert.ok(files, `${s.name} has a config drive on ${s.host}`);
    return { host: s.host, files, meta: JSON.parse(files.get("openstack/latest/meta_data.json")!.toString()) };
  };

  test("user data, the key, metadata and the port's address reach the drive; it is made again the same after a resize, a rebuild and an unshelve", async () => {
    const key = (await alice.keypairs.createKeypair({ name: "cd-key", publicKey: "" })).keypair!;
    const net = (await admin.networks.createNetwork({ name: "cd-net", shared: true, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "brcd" })).network!;
    await admin.networks.createSubnet({
      subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.88.0.0/24", dnsNameservers: ["10.88.0.53"], disableDhcp: true }),
    });
    const userData = Buffer.from("#cloud-config\nruncmd:\n  - echo hello from user data\n");
    const created = await alice.servers.createServer({
      name: "Web Server_01",
      flavorId: "m1.small",
      imageId,
      requestId: "cd-1",
      keyName: "cd-key",
      userData,
      configDrive: true,
      metadata: { role: "web" },
      networks: [{ networkId: net.id, portId: "", fixedIp: "" }],
    });
    assert.deepEqual([created.server!.configDrive, created.server!.hostname], [true, "web-server-01"]);
    const s = await settled(created.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const first = await driveOf(s.id);
    assert.deepEqual(
      [first.meta.uuid, first.meta.name, first.meta.hostname, first.meta.project_id, first.meta.meta, first.meta.public_keys],
      [s.id, "Web Server_01", "web-server-01", "alice", { role: "web" }, { "cd-key": key.publicKey }],
    );
    assert.deepEqual(first.files.get("openstack/latest/user_data"), userData, "the user data byte for byte");
    const network = JSON.parse(first.files.get("openstack/latest/network_data.json")!.toString());
    const address = s.interfaces[0]!.ipAddresses[0]!;
    assert.deepEqual([network.networks[0].type, network.networks[0].ip_address, network.networks[0].netmask], ["ipv4", address, "255.255.255.0"]);
    assert.deepEqual(network.links[0].ethernet_mac_address, s.interfaces[0]!.macAddress);
    assert.deepEqual(network.services, [{ type: "dns", address: "10.88.0.53" }]);

    // A resize goes to the other host (not the same one here): that host makes the drive again, the same.
    await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium", requestId: "cd-resize" });
    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.notEqual(resized.host, first.host);
    assert.deepEqual((await driveOf(s.id)).files, first.files);
    await alice.servers.confirmResize({ id: s.id, requestId: "cd-confirm" });
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);

    // A renamed rebuild keeps the host name the guest was given at creation.
    await alice.servers.rebuildServer({ id: s.id, imageId, name: "renamed" });
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const rebuilt = await driveOf(s.id);
    assert.deepEqual([rebuilt.meta.name, rebuilt.meta.hostname], ["renamed", "web-server-01"]);
    assert.deepEqual(rebuilt.files.get("openstack/latest/user_data"), userData);

    await alice.servers.shelveServer({ id: s.id, requestId: "cd-shelve" });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    await alice.servers.unshelveServer({ id: s.id, requestId: "cd-unshelve" });
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const unshelved = await driveOf(s.id);
    assert.deepEqual(unshelved.files.get("openstack/latest/user_data"), userData);
    assert.deepEqual(unshelved.meta.public_keys, { "cd-key": key.publicKey });
  });

  test("user data alone gives a config drive, nothing asked gives none; user data over 64 KiB is refused, naming user_data", async () => {
    const plain = (await alice.servers.createServer({ name: "plain", flavorId: "m1.small", imageId, requestId: "cd-plain" })).server!;
    assert.equal(plain.configDrive, false);
    const s = await settled(plain.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.ok((await fx.agents.domains(s.host))[s.id], "the server runs on its host");
    assert.equal(await configDriveOf(join(dir, s.host, "fake-domains.json"), s.id), undefined, "and has no config drive");
    // No metadata service: user data reaches a guest only on a drive, so it gets one unasked.
    const scripted = (await alice.servers.createServer({ name: "scripted", flavorId: "m1.small", imageId, requestId: "cd-scripted", userData: Buffer.from("x") })).server!;
    assert.equal(scripted.configDrive, true);
    await settled(scripted.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual((await driveOf(scripted.id)).files.get("openstack/latest/user_data"), Buffer.from("x"));
    assert.equal((await driveOf(scripted.id)).meta.availability_zone, "nova", "the host's zone when none was asked");
    const big = await failure(alice.servers.createServer({ name: "big", flavorId: "m1.small", imageId, requestId: "cd-big", userData: Buffer.alloc(65537, 1), configDrive: true }));
    assert.deepEqual([big.code, big.fields], [status.INVALID_ARGUMENT, ["user_data"]]);
    assert.match(big.message, /at most 65536 bytes \(65537 given\)/);
    // The same request id with other user data is another request.
    const again = await failure(alice.servers.createServer({ name: "scripted", flavorId: "m1.small", imageId, requestId: "cd-scripted", userData: Buffer.from("y") }));
    assert.equal(again.code, status.ALREADY_EXISTS);
    assert.match(again.message, /user_data_sha256/);
  });
});
