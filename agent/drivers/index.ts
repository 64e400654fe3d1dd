/** The driver layer: the contract, its domain types and errors, and the drivers. */
export {
  DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
  DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS,
  type CallOptions,
  type Driver,
  type FinishMigrationOptions,
  type FinishRevertMigrationOptions,
  type InstanceOptions,
  type LiveMigrateOptions,
  type MigrateDiskOptions,
  type PostLiveMigrationOptions,
  type PowerOffOptions,
  type PreLiveMigrationOptions,
  type RebootOptions,
  type RebuildOptions,
  type SnapshotOptions,
  type SpawnOptions,
} from "./driver.js";
export {
  DriverError,
  InstanceNotFoundError,
  NotSupportedError,
  SoftRebootTimeoutError,
  type DriverErrorCode,
} from "./errors.js";
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
  type SnapshotInfo,
} from "./types.js";
export {
  FakeDriver,
  LIVE_MIGRATION_STEPS,
  type FakeCall,
  type FakeDomain,
  type FakeDriverOptions,
  type FakeEvent,
  type FakeIncoming,
} from "./fake/fake-driver.js";
export { setDomainPowerState } from "./fake/domain-store.js";
export { FAULTABLE_METHODS, parseFaults, type FaultSpec, type FaultableMethod, type Faults } from "./fake/faults.js";
