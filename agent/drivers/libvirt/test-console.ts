/** Console waits for the real-guest tests of the libvirt driver (the test guest's ready lines). */
import type { Driver } from "../driver.js";

/**
 * A `guestUp(driver, id)` that waits (at most `timeoutMs`) until the guest's
 * console has one more "novamesh-test-guest: ready" line than at the last
 * call for that instance: the first boot, then each reboot.
 */
export function readyWaiter(timeoutMs: number): (driver: Driver, id: string) => Promise<void> {
  const readyLines = new Map<string, number>();
  return async (driver, id) => {
    const seen = readyLines.get(id) ?? 0;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = await driver.consoleOutput({ instanceId: id, maxBytes: 1 << 20 });
      const n = log.split("novamesh-test-guest: ready").length - 1;
      if (n > seen) {
        readyLines.set(id, n);
        return;
      }
      if (Date.now() > deadline) throw new Error(`guest ${id} not up within ${timeoutMs / 1000} s; console:\n${log.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
}
