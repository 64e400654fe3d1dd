/** The agent's network side: the contract, its domain types, and the drivers. */
import { FakeNetworkDriver, type FakeNetworkDriverOptions } from "./fake/fake-network-driver.js";
import { LinuxNetworkDriver, type LinuxNetworkDriverOptions } from "./linux/linux-network-driver.js";
import type { NetworkDriver } from "./driver.js";

export type { NetworkDriver } from "./driver.js";
export type { FixedIp, NetworkSpec, PortSpec, SecurityRuleSpec, Segmentation, SubnetSpec, VifSpec } from "./types.js";
export { FakeNetworkDriver, type FakeNetworkDriverOptions } from "./fake/fake-network-driver.js";
export { LinuxNetworkDriver, type LinuxNetworkDriverOptions } from "./linux/linux-network-driver.js";
export { defaultHostTag, tapName, vxlanBridgeName, vxlanDeviceName } from "./linux/naming.js";

/** Which network driver to make, with its options. */
export type NetworkDriverOptions =
  | ({ readonly kind: "fake" } & FakeNetworkDriverOptions)
  | ({ readonly kind: "linux" } & LinuxNetworkDriverOptions);

/** Makes the network driver `options.kind` names. */
export function makeNetworkDriver(options: NetworkDriverOptions): NetworkDriver {
  switch (options.kind) {
    case "fake":
      return new FakeNetworkDriver(options);
    case "linux":
      return new LinuxNetworkDriver(options);
    default:
      throw new RangeError(`unknown network driver "${(options as { kind: string }).kind}"`);
  }
}
