/** The domain XML a live migration hands the target: volume disks open the target's exports; only local disks are copied. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DriverError } from "../errors.js";
import { buildVolumeDiskXml, parseDisks } from "./domain-xml.js";
import { localDisksToCopy, retargetVolumeDisks } from "./migrating-volumes.js";

const local = `<disk type="file" device="disk">
      <driver name="qemu" type="qcow2" cache="none"/>
      <source file="/var/lib/novamesh/instances/i-1/disk" index="2"/>
      <target dev="vda" bus="virtio"/>
    </disk>`;
const cdrom = `<disk type="file" device="cdrom">
      <target dev="sda" bus="sata"/>
      <readonly/>
    </disk>`;
const volume = (attachmentId: string, target: string, port: number) => buildVolumeDiskXml({ attachmentId, target, host: "10.0.0.9", port, exportName: attachmentId });
const domain = (...disks: string[]) => `<domain type="kvm">\n  <name>i-1</name>\n  <devices>\n    ${disks.join("\n    ")}\n  </devices>\n</domain>\n`;

const refused = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof DriverError, String(err));
    assert.equal(err.code, "INVALID_ARGUMENT");
    assert.equal(err.retryable, false);
    assert.match(err.message, message);
    return true;
  });

describe("live migration of a domain with volumes", () => {
  test("each volume disk opens the export named for its attachment; the local disk and the rest are unchanged", () => {
    const xml = domain(local, volume("att-1", "vdb", 10809), volume("att-2", "vdc", 10810), cdrom);
    const moved = retargetVolumeDisks(
      xml,
      [
        { attachmentId: "att-2", export: { host: "10.0.0.9", port: 10820, exportName: "exp-2" } },
        { attachmentId: "att-1", export: { host: "vol-host.example", port: 10811, exportName: "exp-1&x" } },
      ],
      "i-1",
      "host-b",
    );
    const disks = parseDisks(moved);
    assert.deepEqual(
      disks.map((d) => [d.target, d.attachmentId, d.nbd]),
      [
        ["vda", undefined, undefined],
        ["vdb", "att-1", { host: "vol-host.example", port: 10811, exportName: "exp-1&x" }],
        ["vdc", "att-2", { host: "10.0.0.9", port: 10820, exportName: "exp-2" }],
        ["sda", undefined, undefined],
      ],
    );
    assert.ok(moved.includes("<reconnect delay="), "the rest of the disk stays");
    assert.ok(moved.includes(local) && moved.includes(cdrom));
    assert.equal(retargetVolumeDisks(domain(local), [], "i-1", "host-b"), domain(local), "a domain without volumes is unchanged");
  });

  test("a volume without an export for the target, a network disk that is no volume, or a bad export is refused", () => {
    const xml = domain(local, volume("att-1", "vdb", 10809));
    refused(() => retargetVolumeDisks(xml, [], "i-1", "host-b"), /volume attachment att-1 \(vdb\) has no export for host-b/);
    const other = [{ attachmentId: "att-9", export: { host: "10.0.0.9", port: 10811, exportName: "att-9" } }];
    refused(() => retargetVolumeDisks(xml, other, "i-1", "host-b"), /att-1 \(vdb\) has no export/);
    const foreign = volume("att-1", "vdb", 10809).replace(/<alias[^>]*>/, "");
    refused(() => retargetVolumeDisks(domain(local, foreign), other, "i-1", "host-b"), /network disk vdb is not a volume attachment/);
    const bad = (e: { host: string; port: number; exportName: string }) => [{ attachmentId: "att-1", export: e }];
    refused(() => retargetVolumeDisks(xml, bad({ host: "a b", port: 1, exportName: "x" }), "i-1", "host-b"), /bad host/);
    refused(() => retargetVolumeDisks(xml, bad({ host: "h", port: 70000, exportName: "x" }), "i-1", "host-b"), /bad port/);
    refused(() => retargetVolumeDisks(xml, bad({ host: "h", port: 1, exportName: "" }), "i-1", "host-b"), /no name/);
  });

  test("only local disks with a source that are not read-only are copied", () => {
    assert.deepEqual(localDisksToCopy(domain(local, volume("att-1", "vdb", 10809), cdrom)), ["vda"]);
    assert.deepEqual(localDisksToCopy(domain(volume("att-1", "vdb", 10809))), []);
  });
});
