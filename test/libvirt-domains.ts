/** Clean-up of the real-guest tests: the servers' domains on the test libvirtds. */
import { loadLibvirt } from "../agent/drivers/libvirt/binding/index.js";
import * as C from "../agent/drivers/libvirt/binding/constants.js";

/** Destroys (when running) and undefines (when defined) the domains of servers `ids` on the libvirtd at `uri`. */
export async function removeDomains(uri: string, ids: string[]): Promise<void> {
  const conn = await loadLibvirt().open(uri);
  try {
    for (const d of await conn.listAllDomains(0)) {
      const name = await d.getName();
      if (!ids.some((id) => name === `novamesh-${id}`)) continue;
      if (await d.isActive()) await d.destroy();
      if (await d.isPersistent()) await d.undefineFlags(C.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE);
    }
  } finally {
    await conn.close();
  }
}
