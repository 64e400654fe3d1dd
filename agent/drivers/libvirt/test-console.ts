/** Console waits for the real-guest tests of the libvirt driver (the test guest's ready, nics and disks lines). */
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

/**
 * Waits (at most `seconds`) for a console line, after the first `from`
 * bytes, that starts with `prefix` and satisfies `ok`; the line (trimmed)
 * and the console's length then, to wait for a later line from there.
 */
export async function consoleLine(
  driver: Driver,
  id: string,
  from: number,
  prefix: string,
  ok: (line: string) => boolean,
  seconds: number,
): Promise<{ line: string; length: number }> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const log = await driver.consoleOutput({ instanceId: id, maxBytes: 1 << 20 });
    const line = log
      .slice(from)
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.startsWith(prefix) && ok(l));
    if (line) return { line, length: log.length };
    if (Date.now() > deadline) throw new Error(`no "${prefix}" line as expected within ${seconds} s; console:\n${log.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
