/**
 * What the libvirt driver is made of: the parts the facade
 * (`libvirt-driver.ts`) builds once and hands to each of its modules.
 */
import type { Logger } from "pino";
import type { ManagedConnection } from "./connection.js";
import type { Domains } from "./domains.js";
import type { BaseImages } from "./image-cache.js";
import type { InstanceFiles } from "./instance-files.js";
import type { Inventory } from "./inventory.js";
import type { LibvirtDriverOptions } from "./options.js";

/** The driver's parts, as its modules share them. */
export interface DriverParts {
  readonly options: LibvirtDriverOptions;
  readonly log: Logger;
  readonly libvirt: ManagedConnection;
  readonly files: InstanceFiles;
  readonly inventory: Inventory;
  readonly images: BaseImages;
  readonly domains: Domains;
}
