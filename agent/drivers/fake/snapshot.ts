/** What a fake guest's disk and console hold: snapshots of the disk and the console log. */
import { createHash } from "node:crypto";
import { tailBytes } from "../console-tail.js";
import type { CallOptions, ConsoleOutputOptions, SnapshotOptions } from "../driver.js";
import type { SnapshotInfo } from "../types.js";
import type { FakeHost } from "./fake-host.js";
import { wait } from "./faults.js";

/**
 * Stores nothing; says what a real snapshot would have stored: a SHA-256
 * over the domain's spec and the image id (the same for the same domain
 * and image), about a tenth of the root disk, in the image's disk format.
 */
export async function snapshot(
  host: FakeHost,
  { instanceId, imageId, onUploading }: SnapshotOptions,
  call: CallOptions,
): Promise<SnapshotInfo> {
  host.require("snapshot", "snapshot");
  await host.ready("snapshot", true, call, instanceId);
  const d = host.owned(instanceId, "snapshot");
  // The capture took the call's delay; the upload takes it again.
  onUploading?.();
  await wait(host.injector.delayMs("snapshot", true, instanceId), call.signal);
  const checksum = createHash("sha256").update(JSON.stringify({ instance: d.instance, imageId })).digest("hex");
  const usedMib = Math.max(16, Math.round(d.instance.diskGb * 1024 * 0.1));
  return {
    sizeBytes: usedMib * 2 ** 20 + (parseInt(checksum.slice(0, 5), 16) % 2 ** 20),
    checksum,
    diskFormat: d.instance.image.diskFormat || "qcow2",
  };
}

/**
 * A fake guest's console: a banner, then two lines per boot (the boot
 * count is the domain's), as a real guest's log grows with each start.
 */
export async function consoleOutput(
  host: FakeHost,
  { instanceId, maxBytes }: ConsoleOutputOptions,
  options: CallOptions,
): Promise<string> {
  host.require("consoleLog", "consoleOutput");
  await host.ready("consoleOutput", false, options, instanceId);
  const d = host.get(instanceId);
  const { name, id, vcpus, memoryMb } = d.instance;
  const lines = [`novamesh fake console of ${name} (${id})`];
  for (let boot = 1; boot <= d.boots; boot++) {
    lines.push(`[boot ${boot}] fake kernel: ${vcpus} vCPUs, ${memoryMb} MiB`, `[boot ${boot}] ${name} login:`);
  }
  return tailBytes(new TextEncoder().encode(lines.join("\n") + "\n"), maxBytes);
}
