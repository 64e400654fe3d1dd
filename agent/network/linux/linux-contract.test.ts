/** The network driver contract against the linux driver, in a namespace playing the host. */
import { after, before } from "node:test";
import assert from "node:assert/strict";
import { networkDriverContract } from "../contract.js";
import type { NetworkDriver } from "../driver.js";
import { LinuxNetworkDriver } from "./linux-network-driver.js";
import { Lab, sh, skipReason } from "./test-hosts.js";

const skip = await skipReason();
const lab = new Lab();
let host = "";

before(async () => {
  if (skip) return;
  host = await lab.namespace("host");
  await sh("ip", "-n", host, "addr", "add", "192.0.2.10/24", "dev", "lo");
  await sh("ip", "-n", host, "link", "add", "brphys", "type", "bridge");
});
after(async () => {
  await lab.cleanup();
  if (!skip) assert.deepEqual(await lab.leftovers(), [], "nothing is left behind");
});

const made = new WeakMap<NetworkDriver, { hostTag: string; stateDir: string }>();
networkDriverContract("linux", {
  skip,
  physicalBridge: "brphys",
  make: async ({ tunnelIp }) => {
    const options = { hostTag: lab.tag(), stateDir: await lab.stateDir() };
    const d = new LinuxNetworkDriver({ hostname: "contract", netns: host, tunnelIp, ...options });
    made.set(d, options);
    return d;
  },
  restart: async (d) => {
    const options = made.get(d);
    assert.ok(options);
    const again = new LinuxNetworkDriver({ hostname: "contract", netns: host, tunnelIp: d.tunnelIp, ...options });
    made.set(again, options);
    return again;
  },
  cleanup: async (d) => {
    const linux = d as LinuxNetworkDriver;
    await linux.purge();
    const tables = await sh("ip", "netns", "exec", host, "nft", "list", "tables");
    assert.doesNotMatch(tables, new RegExp(`nm_${linux.hostTag}\\b`), "purge leaves no table of the agent");
    assert.equal(await sh("ip", "-n", host, "-br", "link", "show", "type", "vxlan"), "", "nor a VXLAN device");
  },
});
