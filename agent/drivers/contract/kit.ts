/**
 * What the contract suites share: drivers made and closed around a test,
 * tests that run only where the driver can, and assertions on errors.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Driver } from "../driver.js";
import { DriverError } from "../errors.js";
import type { DriverCapabilities } from "../types.js";

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
        t.skip(`the driver has no ${capability}`);
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

  return { withDriver, withTwo, testIf, plain, listed };
}
