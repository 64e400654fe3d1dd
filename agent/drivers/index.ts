/** The driver layer: the contract, its domain types and errors, and the drivers. */
export type {
  CallOptions,
  Driver,
  InstanceOptions,
  PowerOffOptions,
  RebootOptions,
  SpawnOptions,
} from "./driver.js";
export { DriverError, InstanceNotFoundError, NotSupportedError, type DriverErrorCode } from "./errors.js";
export {
  ACTIVE_POWER_STATES,
  POWER_STATES,
  isPowerState,
  type DriverCapabilities,
  type HostReport,
  type ImageSpec,
  type InstanceReport,
  type InstanceSpec,
  type PowerState,
  type Resources,
} from "./types.js";
export { FakeDriver, type FakeCall, type FakeDomain, type FakeDriverOptions } from "./fake/fake-driver.js";
export { FAULTABLE_METHODS, parseFaults, type FaultSpec, type FaultableMethod, type Faults } from "./fake/faults.js";
