import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DriverError } from "../errors.js";
import { buildDomainXml } from "./domain-xml.js";
import { formatMigrationUri, jobPercent, parseMigrationUri, rebaseXmlPaths, uriHost } from "./live-migration.js";

describe("live migration URI", () => {
  test("round-trips the libvirt URI, instances path and inbound address", () => {
    const t = { uri: "qemu+tcp://10.0.0.2:16510/system", instancesPath: "/var/lib/novamesh/instances b&c", inboundAddr: "10.0.0.2" };
    const s = formatMigrationUri(t);
    assert.ok(s.startsWith("qemu+tcp://10.0.0.2:16510/system#"), s);
    assert.deepEqual(parseMigrationUri(s), t);
  });

  test("the inbound address defaults to the URI's host", () => {
    assert.equal(parseMigrationUri("qemu+tcp://host-b/system#instances=%2Fsrv").inboundAddr, "host-b");
    assert.equal(uriHost("qemu+tcp://[fd00::2]:16509/system"), "fd00::2");
    assert.equal(uriHost("qemu:///system"), undefined);
  });

  test("a URI without target paths is a non-retryable INVALID_ARGUMENT naming what is missing", () => {
    for (const [bad, why] of [
      ["qemu+tcp://host-b/system", /no target paths/],
      ["qemu+tcp://host-b/system#instances=relative", /no absolute instances path/],
      ["qemu:///system#instances=%2Fsrv", /no inbound address/],
      ["", /no target paths/],
    ] as const) {
      assert.throws(
        () => parseMigrationUri(bad),
        (err: unknown) => err instanceof DriverError && err.code === "INVALID_ARGUMENT" && !err.retryable && why.test(err.message),
        bad,
      );
    }
  });
});

describe("domain XML for the target", () => {
  const xml = buildDomainXml({
    serverId: "3f2a3c5e-1111-4222-8333-444455556666",
    type: "qemu",
    vcpus: 1,
    memoryMb: 256,
    disks: [{ path: "/srv/a/inst/3f2a3c5e-1111-4222-8333-444455556666/disk", format: "qcow2", target: "vda" }],
    kernelBoot: { kernel: "/srv/a/inst/_base/k1", initrd: "/srv/a/inst/_base/r1", cmdline: "console=ttyS0 root=/srv/a/inst/x" },
    consoleLog: "/srv/a/inst/3f2a3c5e-1111-4222-8333-444455556666/console.log",
    metadata: { displayName: "web", projectId: "p", imageId: "i", vcpus: 1, memoryMb: 256, diskGb: 1, specHash: "h" },
  });

  test("disk, console log, kernel and ramdisk move under the target's instances path", () => {
    const out = rebaseXmlPaths(xml, "/srv/a/inst", "/srv/b/instances/");
    assert.ok(out.includes("'/srv/b/instances/3f2a3c5e-1111-4222-8333-444455556666/disk'") || out.includes('"/srv/b/instances/3f2a3c5e-1111-4222-8333-444455556666/disk"'), out);
    assert.match(out, /\/srv\/b\/instances\/3f2a3c5e-1111-4222-8333-444455556666\/console\.log/);
    assert.match(out, />\/srv\/b\/instances\/_base\/k1</);
    assert.match(out, />\/srv\/b\/instances\/_base\/r1</);
    assert.doesNotMatch(out, /\/srv\/a\/inst\/(?!x)/, "no path of the source is left");
    assert.match(out, /root=\/srv\/a\/inst\/x/, "a path inside the kernel command line is not a file of ours");
  });

  test("the same layout on both hosts leaves the XML as it is", () => {
    assert.equal(rebaseXmlPaths(xml, "/srv/a/inst/", "/srv/a/inst"), xml);
  });
});

describe("migration progress", () => {
  test("data processed over data total, held below 100 until the job ends", () => {
    assert.equal(jobPercent({ data_total: 0, data_processed: 0 }), undefined);
    assert.equal(jobPercent({}), undefined);
    assert.equal(jobPercent({ data_total: 400, data_processed: 100 }), 25);
    assert.equal(jobPercent({ data_total: 400, data_processed: 400 }), 99);
    assert.equal(jobPercent({ data_total: 400, data_processed: 900 }), 99);
  });
});
