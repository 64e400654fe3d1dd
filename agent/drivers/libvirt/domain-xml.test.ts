import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  buildDomainXml,
  buildInterfaceXml,
  buildVolumeDiskXml,
  domainName,
  parseDisks,
  parseDomainMetadata,
  parseInterfaces,
  serverIdOfDomain,
  xmlEscape,
  type DomainDescription,
} from "./domain-xml.js";
import { localDisksToCopy } from "./migrating-volumes.js";

const ID = "3f0b7c2e-9a41-4d5e-8b6f-1c2d3e4f5a6b";

function description(overrides: Partial<DomainDescription> = {}): DomainDescription {
  return {
    serverId: ID,
    type: "qemu",
    vcpus: 2,
    memoryMb: 2048,
    disks: [{ path: `/var/lib/novamesh/instances/${ID}/disk`, format: "qcow2", target: "vda" }],
    consoleLog: `/var/lib/novamesh/instances/${ID}/console.log`,
    metadata: { displayName: "web-1", projectId: "demo", imageId: "img-1", vcpus: 2, memoryMb: 2048, diskGb: 20, specHash: "abc123" },
    ...overrides,
  };
}

describe("domain XML", () => {
  test("a config drive is a read-only CD-ROM: IDE on the pc machine, SATA on q35; a live migration does not copy it", () => {
    const drive = `/var/lib/novamesh/instances/${ID}/disk.config`;
    const pc = buildDomainXml(description({ configDrive: drive }));
    assert.match(pc, new RegExp(`<disk type='file' device='cdrom'>\\s*<driver name='qemu' type='raw'/>\\s*<source file='${drive}'/>\\s*<target dev='hdd' bus='ide'/>\\s*<readonly/>`));
    const q35 = buildDomainXml(description({ configDrive: drive, machine: "pc-q35-7.2" }));
    assert.match(q35, /<target dev='sda' bus='sata'\/>/);
    assert.deepEqual(localDisksToCopy(pc), ["vda"], "only the root disk is copied");
    assert.ok(!buildDomainXml(description()).includes("cdrom"), "no drive unless asked");
    assert.throws(() => buildDomainXml(description({ configDrive: "relative/disk.config" })), /config drive path must be an absolute path/);
  });

  test("a domain booted from a volume: no local disk, vda the volume's network disk with its attachment's alias, the root attachment in the metadata", () => {
    const root = { attachmentId: "att-root", target: "vda", host: "192.0.2.5", port: 10809, exportName: "att-root" };
    const xml = buildDomainXml(description({ disks: [], volumes: [root], metadata: { ...description().metadata, diskGb: 0, rootAttachmentId: "att-root" } }));
    assert.ok(!xml.includes("<disk type='file'"), "no local disk");
    assert.ok(xml.includes(buildVolumeDiskXml(root).split("\n")[0]!), "a network disk");
    assert.deepEqual(
      parseDisks(xml).map((d) => [d.target, d.attachmentId, d.nbd]),
      [["vda", "att-root", { host: "192.0.2.5", port: 10809, exportName: "att-root" }]],
    );
    assert.ok(xml.includes("<boot dev='hd'/>"), "it boots from vda");
    assert.equal(parseDomainMetadata(xml)?.rootAttachmentId, "att-root");
    assert.equal(parseDomainMetadata(buildDomainXml(description()))?.rootAttachmentId, undefined, "a domain on a local disk names no root volume");
    assert.throws(() => buildDomainXml(description({ disks: [], volumes: [{ ...root, target: "vdb" }], metadata: { ...description().metadata, rootAttachmentId: "att-root" } })), RangeError);
  });

  test("a qcow2-backed TCG domain, exactly", () => {
    assert.equal(
      buildDomainXml(description()),
      `<domain type='qemu'>
  <name>novamesh-${ID}</name>
  <uuid>${ID}</uuid>
  <title>web-1</title>
  <metadata>
    <nm:instance xmlns:nm='https://novamesh.io/xmlns/libvirt/instance/1'>
      <nm:name>web-1</nm:name>
      <nm:project>demo</nm:project>
      <nm:image>img-1</nm:image>
      <nm:flavor vcpus='2' memory_mb='2048' disk_gb='20'/>
      <nm:spec hash='abc123'/>
    </nm:instance>
  </metadata>
  <memory unit='MiB'>2048</memory>
  <currentMemory unit='MiB'>2048</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/novamesh/instances/${ID}/disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='/var/lib/novamesh/instances/${ID}/console.log' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`,
    );
  });

  test("direct kernel boot replaces the boot device with kernel, initrd and command line", () => {
    const xml = buildDomainXml(
      description({ type: "kvm", kernelBoot: { kernel: "/base/k", initrd: "/base/i", cmdline: "console=ttyS0 quiet" } }),
    );
    assert.match(xml, /^<domain type='kvm'>/);
    assert.match(xml, /<kernel>\/base\/k<\/kernel>\n {4}<initrd>\/base\/i<\/initrd>\n {4}<cmdline>console=ttyS0 quiet<\/cmdline>/);
    assert.doesNotMatch(xml, /<boot dev=/);
  });

  test("every user value is escaped: names, project, paths and command line cannot break out", () => {
    const evil = `a'b"c<d>&e</nm:name><evil/>`;
    const xml = buildDomainXml(
      description({
        consoleLog: "/tmp/x'/><hack/>.log",
        kernelBoot: { kernel: "/k", cmdline: "x</cmdline><hack/>" },
        metadata: { ...description().metadata, displayName: evil, projectId: "p&q", imageId: "<i>" },
      }),
    );
    assert.doesNotMatch(xml, /<evil\/>|<hack\/>/);
    assert.match(xml, /<title>a&apos;b&quot;c&lt;d&gt;&amp;e&lt;\/nm:name&gt;&lt;evil\/&gt;<\/title>/);
    assert.match(xml, /<source path='\/tmp\/x&apos;\/&gt;&lt;hack\/&gt;.log' append='on'\/>/);
    assert.equal(xmlEscape("tab\tok\u0001gone"), "tab\tokgone", "characters XML cannot carry are dropped");
  });

  test("values libvirt would misread are refused", () => {
    assert.throws(() => buildDomainXml(description({ serverId: "not-a-uuid" })), /UUID/);
    assert.throws(() => buildDomainXml(description({ vcpus: 0 })), /vcpus/);
    assert.throws(() => buildDomainXml(description({ memoryMb: 1.5 })), /memoryMb/);
    assert.throws(() => buildDomainXml(description({ consoleLog: "relative.log" })), /absolute/);
    assert.throws(() => buildDomainXml(description({ arch: "x86'64" })), /arch/);
    assert.throws(() => buildDomainXml(description({ disks: [{ path: "/d", format: "qcow2", target: "vd'a" }] })), /target/);
    assert.throws(() => buildDomainXml(description({ disks: [] })), /disk or a kernel/);
  });

  test("metadata reads back from libvirt's rendering (double quotes, other prefix, empty name)", () => {
    const meta = { displayName: "", projectId: "p&q", imageId: "img", vcpus: 1, memoryMb: 512, diskGb: 0, specHash: "h" };
    assert.deepEqual(parseDomainMetadata(buildDomainXml(description({ metadata: meta }))), meta);
    const libvirtStyle = `<domain><metadata>
    <x:instance xmlns:x="https://novamesh.io/xmlns/libvirt/instance/1">
      <x:name/>
      <x:project>p&amp;q</x:project>
      <x:image>img</x:image>
      <x:flavor vcpus="1" memory_mb="512" disk_gb="0"/>
      <x:spec hash="h"/>
    </x:instance>
  </metadata></domain>`;
    assert.deepEqual(parseDomainMetadata(libvirtStyle), meta);
    assert.equal(parseDomainMetadata("<domain><name>other</name></domain>"), undefined);
    assert.equal(parseDomainMetadata(libvirtStyle.replace("novamesh.io", "example.org")), undefined, "another namespace is not ours");
  });

  test("domain names map to server ids and back; other names are not ours", () => {
    assert.equal(serverIdOfDomain(domainName(ID)), ID);
    assert.equal(serverIdOfDomain("instance-0000001"), undefined);
  });

  test("a hot-plugged interface is the same element the domain XML has, and interfaces read back by MAC", () => {
    const nic = { mac: "fa:16:3e:00:00:0a", bridge: "nmbr-1", tap: "tap-a", mtu: 1450 };
    const element = buildInterfaceXml(nic);
    assert.equal(
      element,
      "<interface type='bridge'>\n  <mac address='fa:16:3e:00:00:0a'/>\n  <source bridge='nmbr-1'/>\n  <target dev='tap-a'/>\n" +
        "  <model type='virtio'/>\n  <mtu size='1450'/>\n</interface>\n",
    );
    const domain = buildDomainXml(description({ interfaces: [nic] }));
    assert.ok(domain.includes(element.trimEnd().replace(/^/gm, "    ")), "indented, the domain XML carries the same element");
    assert.deepEqual(parseInterfaces(domain), [{ mac: nic.mac, xml: element.trimEnd().replace(/\n/g, "\n    ") }]);
    const libvirtStyle = `<domain><devices><interface type="bridge">
      <mac address="FA:16:3E:00:00:0B"/><source bridge="b"/><address type="pci" slot="0x03"/>
    </interface><interface type="network"><source network="default"/></interface></devices></domain>`;
    assert.deepEqual(parseInterfaces(libvirtStyle).map((i) => i.mac), ["fa:16:3e:00:00:0b"], "lower case; one without a MAC is skipped");
    assert.throws(() => buildInterfaceXml({ ...nic, mac: "FA-16" }), /MAC/);
    assert.throws(() => buildInterfaceXml({ ...nic, tap: "a-tap-name-too-long" }), /tap/);
    assert.throws(() => buildInterfaceXml({ ...nic, mtu: 20 }), /mtu/);
  });

  test("a volume's disk is NBD over TLS with its attachment as a user alias; disks read back with target, attachment and export", () => {
    const v = { attachmentId: "att-1", target: "vdb", host: "10.199.0.1", port: 20001, exportName: "a&b'c" };
    assert.equal(
      buildVolumeDiskXml(v),
      "<disk type='network' device='disk'>\n  <driver name='qemu' type='raw' cache='none'/>\n" +
        "  <source protocol='nbd' name='a&amp;b&apos;c' tls='yes'>\n    <host name='10.199.0.1' port='20001'/>\n    <reconnect delay='15'/>\n  </source>\n" +
        "  <target dev='vdb' bus='virtio'/>\n  <alias name='ua-att-1'/>\n</disk>\n",
    );
    const libvirtStyle = `<domain><devices>
      <disk type="file" device="disk"><source file="/i/disk"/><target dev="vda" bus="virtio"/><alias name="virtio-disk0"/></disk>
      <disk type="network" device="disk"><driver name="qemu" type="raw"/><source protocol="nbd" name="a&amp;b" tls="yes" index="2">
        <host name="10.199.0.1" port="20001"/></source><target dev="vdc" bus="virtio"/><alias name="ua-att-2"/></disk>
    </devices></domain>`;
    assert.deepEqual(
      parseDisks(libvirtStyle).map(({ xml: _, ...d }) => d),
      [{ target: "vda" }, { target: "vdc", attachmentId: "att-2", nbd: { host: "10.199.0.1", port: 20001, exportName: "a&b" } }],
    );
    const domain = buildDomainXml(description({ volumes: [v] }));
    assert.ok(domain.includes(buildVolumeDiskXml(v).trimEnd().replace(/^/gm, "    ")), "a definition carries the same element");
    assert.deepEqual(parseDisks(domain).map((d) => [d.target, d.attachmentId]), [["vda", undefined], ["vdb", "att-1"]]);
    assert.throws(() => buildVolumeDiskXml({ ...v, attachmentId: "a.b" }), /attachment id/);
    assert.throws(() => buildVolumeDiskXml({ ...v, target: "sdb'" }), /target/);
    assert.throws(() => buildVolumeDiskXml({ ...v, host: "h'ost" }), /host/);
    assert.throws(() => buildVolumeDiskXml({ ...v, port: 70000 }), /port/);
  });
});
