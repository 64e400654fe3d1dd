import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, DEFAULT_CONFIG, checkTlsSettings, loadConfig, pipelineOptions } from "./config.js";

test("flags override environment, which overrides defaults", () => {
  const c = loadConfig(["--listen", "0.0.0.0:9000", "--max-attempts=5", "--fault-hold-outbox"], {
    NOVAMESH_LISTEN: "127.0.0.1:1",
    NOVAMESH_RAM_ALLOCATION_RATIO: "1.5",
  });
  assert.equal(c.listen, "0.0.0.0:9000");
  assert.equal(c.maxAttempts, 5);
  assert.equal(c.ramAllocationRatio, 1.5);
  assert.equal(c.holdOutbox, true);
  assert.equal(c.natsUrl, DEFAULT_CONFIG.natsUrl);
});

test("bad flags are refused with the flag named", () => {
  assert.throws(() => loadConfig(["--bogus"], {}), ConfigError);
  assert.throws(() => loadConfig(["--max-attempts", "many"], {}), /--max-attempts/);
  assert.throws(() => loadConfig(["--listen"], {}), /--listen needs a value/);
});

test("scheduler settings are checked: algorithm, subset size, multipliers, reservations, ratios", () => {
  const cfg = loadConfig(["--scheduler-algorithm", "chance", "--host-subset-size", "3", "--weigher-multipliers", "ram=-1, build_failure=10"], {});
  const o = pipelineOptions(cfg);
  assert.deepEqual([o.algorithm, o.hostSubsetSize, o.multipliers?.ram, o.multipliers?.buildFailure, o.multipliers?.vcpu], ["chance", 3, -1, 10, 1]);
  assert.throws(() => loadConfig(["--scheduler-algorithm", "best"], {}), /--scheduler-algorithm: "best" is not one of filter-weigh, least-loaded, chance, zone/);
  assert.throws(() => loadConfig(["--weigher-multipliers", "gpu=2"], {}), /unknown weigher "gpu"/);
  assert.throws(() => loadConfig(["--weigher-multipliers", "ram=x"], {}), /ram needs a number/);
  assert.throws(() => loadConfig(["--host-subset-size", "0"], {}), /--host-subset-size/);
  assert.throws(() => loadConfig(["--reserved-host-cpus", "1.5"], {}), /--reserved-host-cpus: expected a whole number/);
  assert.throws(() => loadConfig(["--cpu-allocation-ratio", "0"], {}), /--cpu-allocation-ratio: expected a number > 0/);
});

test("NATS credentials: a signing key needs the controller's own credentials, and agent credentials live at least 10 s", () => {
  assert.throws(() => loadConfig(["--nats-signing-key", "/x/account-signing.nk"], {}), /--nats-signing-key needs --nats-creds/);
  assert.throws(() => loadConfig(["--nats-agent-ttl", "5"], {}), /--nats-agent-ttl/);
  const c = loadConfig(["--nats-creds", "/x/controller.creds", "--nats-signing-key", "/x/account-signing.nk"], { NOVAMESH_NATS_AGENT_TTL: "600" });
  assert.deepEqual([c.natsCreds, c.natsSigningKey, c.natsAgentTtlSeconds], ["/x/controller.creds", "/x/account-signing.nk", 600]);
});

const tls = (argv: string[], env: NodeJS.ProcessEnv) => {
  const c = loadConfig(argv, env);
  checkTlsSettings(c);
  return c;
};

test("TLS is the default: a certificate and key, or --plaintext explicitly; the agent listener needs its client CA", () => {
  assert.throws(() => tls([], {}), /--tls-cert and --tls-key .*or --plaintext \(NOVAMESH_PLAINTEXT=1\)/);
  assert.equal(tls(["--plaintext"], {}).plaintext, true);
  assert.equal(tls([], { NOVAMESH_PLAINTEXT: "1" }).plaintext, true);
  const c = tls(["--agent-listen", "127.0.0.1:8775", "--agent-client-ca", "ca.pem"], { NOVAMESH_TLS_CERT: "c.pem", NOVAMESH_TLS_KEY: "k.pem" });
  assert.deepEqual([c.tlsCert, c.tlsKey, c.agentListen, c.agentClientCa, c.plaintext], ["c.pem", "k.pem", "127.0.0.1:8775", "ca.pem", false]);
  assert.throws(() => tls(["--tls-cert", "c.pem"], {}), /--tls-cert is given without --tls-key/);
  assert.throws(() => tls(["--plaintext", "--tls-cert", "c.pem"], {}), /--plaintext .* cannot be combined with --tls-cert/);
  assert.throws(() => tls(["--tls-cert", "c.pem", "--tls-key", "k.pem", "--agent-listen", ":8775"], {}), /--agent-listen requires --agent-client-ca/);
  assert.throws(() => tls(["--plaintext", "--agent-listen", ":8775"], {}), /--agent-listen requires client certificates/);
});
