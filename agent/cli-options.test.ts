import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { agentHelp, agentInstances, parseAgentCli, UsageError, type AgentCliConfig } from "./cli-options.js";

function parse(argv: string[], env: NodeJS.ProcessEnv = {}): AgentCliConfig {
  const c = parseAgentCli(argv, env);
  assert.notEqual(c, "help");
  return c as AgentCliConfig;
}

test("defaults, then NOVAMESH_* variables, then flags win", () => {
  const d = parse([], {});
  assert.equal(d.controller, "127.0.0.1:8774");
  assert.equal(d.natsUrl, "nats://127.0.0.1:4222");
  assert.equal(d.driver, "fake");
  assert.equal(d.hosts, 1);
  assert.equal(d.reportIntervalSeconds, undefined);
  const env = { NOVAMESH_CONTROLLER: "ctl:1", NOVAMESH_AGENT_TOKEN: "t", NOVAMESH_HOST: "h1", NOVAMESH_STATE_DIR: "/s" };
  const e = parse([], env);
  assert.deepEqual([e.controller, e.token, e.host, e.stateDir], ["ctl:1", "t", "h1", "/s"]);
  const f = parse(["--controller", "ctl:2", "--host", "h2"], env);
  assert.deepEqual([f.controller, f.host, f.token], ["ctl:2", "h2", "t"]);
});

test("fake capacity and faults are parsed; bad values are usage errors", () => {
  const c = parse(["--vcpus", "4", "--memory-mb", "2048", "--disk-gb", "20", "--fake-faults", '{"spawn":{"failTimes":1}}']);
  assert.deepEqual(c.fake.capacity, { vcpus: 4, memoryMb: 2048, diskGb: 20 });
  assert.deepEqual(c.fake.faults, { spawn: { failTimes: 1 } });
  assert.throws(() => parse(["--vcpus", "many"]), UsageError);
  assert.throws(() => parse(["--fake-faults", "{nope"]), /--fake-faults/);
  assert.throws(() => parse(["--fake-faults", '{"boot":{}}']), /unknown method/);
  const lm = parse(["--fake-faults", '{"migrateDisk":{"error":"x"},"liveMigrate":[{"serverId":"s1","delayMs":5000}],"ignoreAcpi":["s2"]}']);
  assert.deepEqual(lm.fake.faults, {
    migrateDiskAndPowerOff: { error: "x" },
    liveMigrate: [{ serverId: "s1", delayMs: 5000 }],
    ignoreAcpi: ["s2"],
  });
  assert.throws(() => parse(["--driver", "hyperv"]), /unknown driver "hyperv"/);
  assert.throws(() => parse(["--driver", "libvirt", "--hosts", "2"]), /one agent per hypervisor/);
  assert.throws(() => parse(["--host", "bad host"]), /--host/);
  assert.throws(() => parse(["--what"]), UsageError);
});

test("the libvirt driver takes its URI, instances path and image directory, and where other hosts live-migrate to it", () => {
  const c = parse(["--driver", "libvirt", "--libvirt-uri", "test:///default", "--instances-path", "/srv/i", "--image-dir", "/srv/img"]);
  assert.equal(c.driver, "libvirt");
  assert.deepEqual(c.libvirt, { uri: "test:///default", instancesPath: "/srv/i", imageDir: "/srv/img", liveMigrationUri: undefined, liveMigrationInboundAddr: undefined });
  assert.deepEqual(parse(["--driver", "libvirt"]).libvirt, { uri: "qemu:///system", instancesPath: undefined, imageDir: undefined, liveMigrationUri: undefined, liveMigrationInboundAddr: undefined });
  assert.throws(() => parse(["--driver", "libvirt", "--image-bucket", "novamesh-images"]), /--image-bucket/, "hosts no longer open the image store");
  const lm = parse(["--driver", "libvirt", "--live-migration-uri", "qemu+tcp://10.0.0.2/system", "--live-migration-inbound-addr", "10.1.0.2"]).libvirt;
  assert.deepEqual([lm.liveMigrationUri, lm.liveMigrationInboundAddr], ["qemu+tcp://10.0.0.2/system", "10.1.0.2"]);
  assert.equal(parse(["--driver", "libvirt"]).libvirt.liveMigrationUri, undefined, "no live migration unless configured");
  assert.throws(() => parse(["--live-migration-uri", "host-b"]), /--live-migration-uri/);
  assert.throws(() => parse(["--live-migration-uri", "qemu+tcp://b/system#x"]), /--live-migration-uri/);
});

test("--hosts N names agents <host>-1..N with a state dir each", () => {
  assert.deepEqual(agentInstances(parse(["--host", "sim", "--hosts", "2"])), [
    { host: "sim-1", stateDir: join(".state", "agent-sim-1") },
    { host: "sim-2", stateDir: join(".state", "agent-sim-2") },
  ]);
  assert.deepEqual(agentInstances(parse(["--host", "sim", "--hosts", "2", "--state-dir", "/x"])).map((i) => i.stateDir), [
    join("/x", "sim-1"),
    join("/x", "sim-2"),
  ]);
  assert.deepEqual(agentInstances(parse(["--host", "one"])), [{ host: "one", stateDir: join(".state", "agent-one") }]);
});

test("--help lists every flag with its variable", () => {
  assert.equal(parseAgentCli(["--help"], {}), "help");
  const help = agentHelp();
  for (const s of ["--controller", "NOVAMESH_CONTROLLER", "--token", "NOVAMESH_AGENT_TOKEN", "--nats", "--hosts", "--fake-faults"]) {
    assert.ok(help.includes(s), s);
  }
});

test("TLS is the default: CA, client certificate and server name from flags or variables; --plaintext only when asked", () => {
  assert.deepEqual(parse([]).tls, { ca: undefined, cert: undefined, key: undefined, serverName: undefined });
  const t = parse(["--tls-ca", "ca.pem", "--tls-cert", "a.pem", "--tls-key", "a-key.pem"], { NOVAMESH_AGENT_TLS_SERVER_NAME: "ctl.example" });
  assert.deepEqual(t.tls, { ca: "ca.pem", cert: "a.pem", key: "a-key.pem", serverName: "ctl.example" });
  assert.deepEqual(parse(["--plaintext"]).tls, { plaintext: true });
  assert.deepEqual(parse([], { NOVAMESH_PLAINTEXT: "1" }).tls, { plaintext: true });
  assert.equal(parse([], { NOVAMESH_PLAINTEXT: "0" }).tls.plaintext, undefined);
  assert.throws(() => parse(["--plaintext", "--tls-ca", "ca.pem"]), /--plaintext connects without TLS; it cannot be combined with --tls-ca/);
  assert.throws(() => parse(["--tls-cert", "a.pem"]), /--tls-cert needs --tls-key/);
  assert.throws(() => parse(["--tls-key", "a-key.pem"]), /--tls-key needs --tls-cert/);
});

test("network: the driver by hypervisor driver, tunnel address, host tag and namespace from flags or variables; bad values are usage errors", () => {
  assert.deepEqual(parse([]).network, { driver: "fake", tunnelIp: "", hostTag: undefined, namespace: undefined });
  assert.deepEqual(parse(["--driver", "libvirt"]).network, { driver: "linux", tunnelIp: "", hostTag: undefined, namespace: undefined });
  const n = parse(["--network-driver", "linux", "--tunnel-ip", "10.199.0.2", "--network-host-tag", "hb1", "--network-namespace", "nmhostb"]);
  assert.deepEqual(n.network, { driver: "linux", tunnelIp: "10.199.0.2", hostTag: "hb1", namespace: "nmhostb" });
  assert.equal(parse(["--network-driver", "linux"], { NOVAMESH_NETWORK_NAMESPACE: "host-b.1" }).network.namespace, "host-b.1");
  // An empty variable is no namespace: the agent's own.
  assert.equal(parse(["--network-driver", "linux"], { NOVAMESH_NETWORK_NAMESPACE: "" }).network.namespace, undefined);
  for (const bad of ["../x", "a/b", "..", "with space"]) {
    assert.throws(() => parse(["--network-driver", "linux", "--network-namespace", bad]), /--network-namespace: .* is not a network namespace name/, bad);
  }
  assert.throws(() => parse(["--network-namespace", "nmhostb"]), /only the linux network driver works in a namespace/);
  assert.throws(() => parse(["--network-driver", "linux", "--tunnel-ip", "host-b"]), /--tunnel-ip: "host-b" is not an IPv4 address/);
  assert.throws(() => parse(["--network-driver", "linux", "--network-host-tag", "TOOLONG"]), /--network-host-tag/);
});

test("--metrics-listen takes host:port; anything else is a usage error naming the flag", () => {
  assert.equal(parse([]).metricsListen, undefined);
  assert.equal(parse(["--metrics-listen", "127.0.0.1:0"]).metricsListen, "127.0.0.1:0");
  assert.equal(parse([], { NOVAMESH_AGENT_METRICS_LISTEN: "[::1]:9181" }).metricsListen, "[::1]:9181");
  assert.equal(parse([], { NOVAMESH_METRICS_LISTEN: "127.0.0.1:9180" }).metricsListen, undefined, "the controller's variable is not the agent's (an all-in-one sets both)");
  for (const bad of ["9181", "host:", "host:99999", "a b:1"]) assert.throws(() => parse(["--metrics-listen", bad]), /--metrics-listen: expected host:port/, bad);
});
