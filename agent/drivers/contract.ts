/**
 * The driver contract as tests: every driver runs this one suite, so the
 * fake and libvirt drivers promise the same things (see `driver.ts`).
 *
 *   driverContract("fake", async (host) => new FakeDriver({ hostname: host }));
 *
 * `makeDriver(host)` returns a fresh, uninitialised driver for host `host`
 * with room for a few small instances (1 vCPU, 512 MiB, 1 GiB each); the
 * suite calls `init()` and `close()`. Migration tests make two (a source
 * and a target host); drivers of different hosts must not share instances.
 * Tests of what `capabilities` says a driver cannot do are skipped.
 */
import { describe } from "node:test";
import type { Driver } from "./driver.js";
import { imagesContract } from "./contract/images.js";
import { interfacesContract } from "./contract/interfaces.js";
import { bootVolumeContract } from "./contract/boot-volume.js";
import { contractKit, type ContractOptions } from "./contract/kit.js";
import { lifecycleContract } from "./contract/lifecycle.js";
import { liveMigrationContract } from "./contract/live-migration.js";
import { migrationContract } from "./contract/migration.js";
import { volumesContract } from "./contract/volumes.js";

export type { ContractOptions } from "./contract/kit.js";

/** Registers the contract tests of a driver with node:test. */
export function driverContract(name: string, makeDriver: (host: string) => Promise<Driver>, options: ContractOptions = {}): void {
  const kit = contractKit(makeDriver, options);
  describe(`driver contract: ${name}`, () => {
    lifecycleContract(kit);
    imagesContract(kit);
    migrationContract(kit);
    liveMigrationContract(kit);
    interfacesContract(kit);
    volumesContract(kit);
    bootVolumeContract(kit);
  });
}
