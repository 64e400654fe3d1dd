import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { PortSpec } from "../network/types.js";
import { configDriveFiles } from "./config-drive.js";
import { writeConfigDrive } from "./libvirt/config-drive-iso.js";
import { isoFiles } from "./libvirt/test-iso.js";
import { testInstance } from "./test-instance.js";
import type { GuestSpec } from "./types.js";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop";
const guest: GuestSpec = {
  hostname: "web-1",
  availabilityZone: "zone-a",
  keyName: "laptop",
  publicKey: KEY,
  userData: new TextEncoder().encode("#!/bin/sh\necho hello from user data\n"),
  configDrive: true,
};

const port = (over: { dhcp: boolean }): PortSpec => ({
  id: "7d0f3c1a-5b2e-4f6a-9c8d-0e1f2a3b4c5d",
  mac: "fa:16:3e:00:00:01",
  fixedIps: [{ subnetId: "sub-1", address: "10.0.0.5" }],
  network: {
    id: "net-1",
    segmentation: "flat",
    physicalBridge: "br0",
    vni: 0,
    mtu: 1450,
    subnets: [
      { id: "sub-1", cidr: "10.0.0.0/24", gatewayIp: "10.0.0.1", dnsServers: ["10.0.0.2"], hostRoutes: [{ destination: "192.168.0.0/16", nexthop: "10.0.0.254" }], dhcp: over.dhcp },
    ],
    dhcpPort: null,
  },
  portSecurity: true,
  securityRules: [],
});

describe("config drive", () => {
  test("meta_data.json carries who the guest is, its key and metadata; user_data is as given; vendor data is empty", () => {
    const instance = testInstance({ name: "Web 1", metadata: { role: "web" } });
    const files = configDriveFiles(instance, guest);
    assert.deepEqual([...files.keys()].sort(), [
      "openstack/latest/meta_data.json",
      "openstack/latest/network_data.json",
      "openstack/latest/user_data",
      "openstack/latest/vendor_data.json",
      "openstack/latest/vendor_data2.json",
    ]);
    const meta = JSON.parse(files.get("openstack/latest/meta_data.json")!.toString());
    assert.deepEqual(meta, {
      uuid: instance.id,
      name: "Web 1",
      hostname: "web-1",
      availability_zone: "zone-a",
      project_id: "test-project",
      launch_index: 0,
      meta: { role: "web" },
      public_keys: { laptop: KEY },
      keys: [{ name: "laptop", type: "ssh", data: KEY }],
      devices: [],
    });
    assert.equal(files.get("openstack/latest/user_data")!.toString(), "#!/bin/sh\necho hello from user data\n");
    assert.deepEqual(configDriveFiles(instance, guest), files, "the same instance, the same drive");
    const bare = configDriveFiles(instance, { ...guest, keyName: "", publicKey: "", userData: new Uint8Array(), availabilityZone: "" });
    assert.equal(bare.has("openstack/latest/user_data"), false);
    const bareMeta = JSON.parse(bare.get("openstack/latest/meta_data.json")!.toString());
    assert.equal(bareMeta.public_keys, undefined);
    assert.equal(bareMeta.availability_zone, "nova", "Nova's default zone name");
  });

  test("network_data.json: a static subnet gives the address, netmask, routes and DNS; a DHCP one says ipv4_dhcp", () => {
    const staticNet = JSON.parse(configDriveFiles(testInstance({ ports: [port({ dhcp: false })] }), guest).get("openstack/latest/network_data.json")!.toString());
    assert.deepEqual(staticNet.links, [{ id: "tap7d0f3c1a-5b", vif_id: "7d0f3c1a-5b2e-4f6a-9c8d-0e1f2a3b4c5d", type: "bridge", mtu: 1450, ethernet_mac_address: "fa:16:3e:00:00:01" }]);
    assert.deepEqual(staticNet.networks, [
      {
        id: "network0",
        link: "tap7d0f3c1a-5b",
        network_id: "net-1",
        type: "ipv4",
        ip_address: "10.0.0.5",
        netmask: "255.255.255.0",
        routes: [
          { network: "0.0.0.0", netmask: "0.0.0.0", gateway: "10.0.0.1" },
          { network: "192.168.0.0", netmask: "255.255.0.0", gateway: "10.0.0.254" },
        ],
        services: [{ type: "dns", address: "10.0.0.2" }],
      },
    ]);
    assert.deepEqual(staticNet.services, [{ type: "dns", address: "10.0.0.2" }]);
    const dhcp = JSON.parse(configDriveFiles(testInstance({ ports: [port({ dhcp: true })] }), guest).get("openstack/latest/network_data.json")!.toString());
    assert.deepEqual(dhcp.networks, [{ id: "network0", link: "tap7d0f3c1a-5b", network_id: "net-1", type: "ipv4_dhcp" }]);
  });

  test("the libvirt driver's ISO: labelled config-2, the OpenStack layout, each file as made (read back with xorriso)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "novamesh-config-drive-"));
    try {
      const instance = testInstance();
      const iso = join(dir, "disk.config");
      await writeConfigDrive(iso, instance, guest);
      const files = configDriveFiles(instance, guest);
      assert.deepEqual(isoFiles(iso), { label: "config-2", files: [...files.keys()].map((f) => `/${f}`).sort() });
      for (const [file, data] of files) {
        const out = join(dir, "out", file);
        execFileSync("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", `/${file}`, out], { stdio: "ignore" });
        assert.deepEqual(await readFile(out), data, file);
      }
      assert.deepEqual((await readFile(iso)).subarray(0x8001, 0x8006).toString(), "CD001", "an ISO 9660 image");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
