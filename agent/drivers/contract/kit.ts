/**
 * What the contract suites share: drivers made and closed around a test,
 * tests that run only where the driver can, and assertions on errors.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { randomBytes } from "node:crypto";
import type { VifSpec } from "../../network/types.js";
import type { Driver } from "../driver.js";
import { DriverError } from "../errors.js";
import type { DriverCapabilities, InstanceSpec, VolumeConnection } from "../types.js";

/** Asserts a rejection with this code and retryable flag. */
export async function rejectsWith(promise: Promise<unknown>, code: string, retryable?: boolean): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof DriverError, `expected a DriverError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (retryable !== undefined) assert.equal(err.retryable, retryable, `${code} retryable`);
    return true;
  });
}

/** Options of `driverContract`. */
export interface ContractOptions {
  /**
   * Run only the tests of this capability (e.g. the live migration tests on
   * real hypervisors, where the rest already ran on a cheaper setup).
   */
  readonly only?: keyof DriverCapabilities;
  /** Why the driver lacks a capability, said when its tests are skipped (default: "the driver has no <capability>"). */
  readonly lacking?: Partial<Record<keyof DriverCapabilities, string>>;
  /**
   * The MACs of the network interfaces instance `instanceId` has, as the
   * hypervisor sees it now: the running guest's, or a shut-off instance's
   * definition. How the interface tests see what a hot-plug did; drivers
   * with `interfaceHotplug` give it.
   */
  readonly interfaceMacs?: (driver: Driver, instanceId: string) => Promise<readonly string[]>;
  /**
   * The export the volume tests attach as `attachmentId` (default: an
   * address nothing answers on); on a real hypervisor, one it can open.
   */
  readonly volumeConnection?: (attachmentId: string) => Promise<VolumeConnection>;
  /**
   * The two exports of one volume the live migration test with a volume
   * uses: the one the source attaches, and the one made for the target
   * (both reach the same volume). Without it that test does not run.
   */
  readonly migratingVolume?: (attachmentId: string) => Promise<{ source: VolumeConnection; target: VolumeConnection }>;
  /**
   * Grows the volume of an attachment to `sizeBytes` where it is served, as
   * its volume host does before an extend (default: nothing, fine for a
   * driver that opens nothing).
   */
  readonly growVolume?: (attachmentId: string, sizeBytes: number) => Promise<void>;
  /** The bridge the interface tests' interfaces join (default "br-contract"; it must exist where the hypervisor checks). */
  readonly bridge?: string;
  /**
   * The instances the interface tests spawn (default: `testInstance()`);
   * on a real hypervisor, a guest that releases a device it is asked to.
   */
  readonly guest?: () => InstanceSpec;
  /**
   * Waits until the guest of `instanceId` has booted (after a spawn or a
   * power on), so it sees and releases devices; default: no wait.
   */
  readonly guestUp?: (driver: Driver, instanceId: string) => Promise<void>;
  /**
   * Other tests run guests on the same hypervisor host at the same time (a
   * real host shared by test files run two at a time): the host's free
   * memory moves under a test, so the tests that measure it by the report
   * leave that measure out (the fake driver's run keeps it).
   */
  readonly hostShared?: boolean;
}

/** Drivers for the contract's tests, and how to register a test. */
export interface ContractKit {
  /** A fresh driver, initialised, closed after `fn`. */
  withDriver(fn: (driver: Driver) => Promise<void>): Promise<void>;
  /** A source and a target host. */
  withTwo(fn: (source: Driver, target: Driver, targetHost: string) => Promise<void>): Promise<void>;
  /** A test that runs only if the driver has `capability` (checked on a driver made for the purpose). */
  testIf(capability: keyof DriverCapabilities, title: string, fn: () => Promise<void>): void;
  /** A test every driver passes (none with `options.only`). */
  plain(title: string, fn: () => Promise<void>): void;
  /** The power state `driver.report()` lists for instance `id`, if any. */
  listed(driver: Driver, id: string): Promise<string | undefined>;
  /** The options the suite was registered with. */
  readonly options: ContractOptions;
  /** A new interface on the options' bridge, with a MAC and tap of its own. */
  vif(): VifSpec;
}

export function contractKit(makeDriver: (host: string) => Promise<Driver>, options: ContractOptions): ContractKit {
  let hosts = 0;
  const host = (role: string) => `contract-${role}-${++hosts}`;

  async function withDriver(fn: (driver: Driver) => Promise<void>): Promise<void> {
    const driver = await makeDriver(host("host"));
    await driver.init();
    try {
      await fn(driver);
    } finally {
      await driver.close();
    }
  }

  async function withTwo(fn: (source: Driver, target: Driver, targetHost: string) => Promise<void>): Promise<void> {
    const targetHost = host("target");
    const source = await makeDriver(host("source"));
    const target = await makeDriver(targetHost);
    await Promise.all([source.init(), target.init()]);
    try {
      await fn(source, target, targetHost);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  }

  function testIf(capability: keyof DriverCapabilities, title: string, fn: () => Promise<void>): void {
    if (options.only !== undefined && options.only !== capability) return;
    test(title, async (t) => {
      const probe = await makeDriver(host("probe"));
      const has = probe.capabilities[capability];
      await probe.close();
      if (!has) {
        t.skip(options.lacking?.[capability] ?? `the driver has no ${capability}`);
        return;
      }
      await fn();
    });
  }

  function plain(title: string, fn: () => Promise<void>): void {
    if (options.only === undefined) test(title, fn);
  }

  async function listed(driver: Driver, id: string): Promise<string | undefined> {
    const report = await driver.report();
    return report.instances.find((i) => i.serverId === id)?.powerState;
  }

  function vif(): VifSpec {
    const id = randomBytes(3).toString("hex");
    return {
      portId: `port-${id}`,
      mac: `fa:16:3e:${id.slice(0, 2)}:${id.slice(2, 4)}:${id.slice(4, 6)}`,
      bridge: options.bridge ?? "br-contract",
      tap: `tapc${id}`,
      mtu: 1450,
    };
  }

  return { withDriver, withTwo, testIf, plain, listed, options, vif };
}
