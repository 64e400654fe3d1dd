import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAgentCli, UsageError, type AgentCliConfig } from "../cli-options.js";
import { parseSize } from "./cli.js";

const parse = (...argv: string[]) => parseAgentCli(argv, {}) as AgentCliConfig;
const refused = (argv: string[], message: RegExp) => assert.throws(() => parseAgentCli(argv, {}), (e: unknown) => e instanceof UsageError && message.test(e.message));

test("sizes: bytes, or K, M, G, T in powers of 1024", () => {
  assert.equal(parseSize("4096"), 4096);
  assert.equal(parseSize("100G"), 100 * 1024 ** 3);
  assert.equal(parseSize("1t"), 1024 ** 4);
  assert.equal(parseSize("512MiB"), 512 * 1024 ** 2);
  for (const bad of ["", "0", "-1G", "1.5G", "10X", "G"]) assert.equal(parseSize(bad), undefined, bad);
});

test("no --volume-backend: not a volume host", () => {
  assert.equal(parse().volumes, undefined);
  refused(["--volume-pools", "a:1G"], /--volume-pools needs --volume-backend/);
});

test("fake and file pools, with the export address and ports", () => {
  const fake = parse("--volume-backend", "fake", "--volume-pools", "fast:100G, bulk:2T").volumes!;
  assert.deepEqual(fake.pools, [
    { name: "fast", path: undefined, sizeBytes: 100 * 1024 ** 3 },
    { name: "bulk", path: undefined, sizeBytes: 2 * 1024 ** 4 },
  ]);
  assert.deepEqual([fake.address, fake.ports], ["127.0.0.1", [10809, 11808]]);
  const file = parse("--volume-backend", "file", "--volume-pools", "a=/srv/vol/a:1T,b=/srv/vol/b", "--volume-tls-dir", "/etc/novamesh/nbd", "--volume-address", "10.0.0.5", "--volume-ports", "20000-20009").volumes!;
  assert.deepEqual(file, {
    backend: "file",
    pools: [
      { name: "a", path: "/srv/vol/a", sizeBytes: 1024 ** 4 },
      { name: "b", path: "/srv/vol/b", sizeBytes: undefined },
    ],
    address: "10.0.0.5",
    ports: [20000, 20009],
    tlsDir: "/etc/novamesh/nbd",
    faults: undefined,
  });
  const faulty = parse("--volume-backend", "fake", "--volume-pools", "a:1G", "--fake-volume-faults", '{"create":{"delayMs":5000}}').volumes!;
  assert.deepEqual(faulty.faults, { create: { delayMs: 5000 } });
});

test("bad volume flags are usage errors naming the flag", () => {
  refused(["--volume-backend", "lvm", "--volume-pools", "a:1G"], /--volume-backend: unknown backend "lvm"/);
  refused(["--volume-backend", "fake"], /needs --volume-pools/);
  refused(["--volume-backend", "fake", "--volume-pools", "a=/x"], /fake pool "a" is NAME:SIZE/);
  refused(["--volume-backend", "fake", "--volume-pools", "a:ten"], /pool "a": "ten" is not a size/);
  refused(["--volume-backend", "fake", "--volume-pools", "a:1G,a:2G"], /pool "a" is named twice/);
  refused(["--volume-backend", "fake", "--volume-pools", "bad/name:1G"], /--volume-pools: "bad\/name:1G"/);
  refused(["--volume-backend", "file", "--volume-pools", "a:1G", "--volume-tls-dir", "/t"], /file pool "a" is NAME=PATH/);
  refused(["--volume-backend", "file", "--volume-pools", "a=/x"], /needs --volume-tls-dir/);
  refused(["--volume-backend", "file", "--volume-pools", "a=/x", "--volume-tls-dir", "/t", "--hosts", "2"], /one agent per process/);
  refused(["--volume-backend", "fake", "--volume-pools", "a:1G", "--volume-ports", "9-8"], /--volume-ports: "9-8"/);
  refused(["--volume-backend", "fake", "--volume-pools", "a:1G", "--fake-volume-faults", '{"mount":{}}'], /--fake-volume-faults: .*unknown method "mount"/);
  refused(["--volume-backend", "fake", "--volume-pools", "a:1G", "--fake-volume-faults", "{"], /--fake-volume-faults: /);
  refused(["--volume-backend", "file", "--volume-pools", "a=/x", "--volume-tls-dir", "/t", "--fake-volume-faults", "{}"], /needs --volume-backend fake/);
});
