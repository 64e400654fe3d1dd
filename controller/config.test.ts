import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, DEFAULT_CONFIG, limitsOf, loadConfig, pipelineOptions } from "./config.js";

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

test("limits: flags and variables set them, stream caps must be whole, a burst of 0 is one second of the rate", () => {
  const cfg = loadConfig(["--rate-limit", "10", "--rate-burst", "0", "--max-streams-per-token", "4", "--watch-buffer", "50"], { NOVAMESH_ADMIN_RATE_LIMIT: "20" });
  const l = limitsOf(cfg);
  assert.deepEqual([l.ratePerSecond, l.rateBurst, l.adminRatePerSecond, l.maxStreamsPerToken, cfg.watchBuffer], [10, 10, 20, 4, 50]);
  assert.equal(limitsOf(DEFAULT_CONFIG).adminRatePerSecond, 0, "admins are not rate limited by default");
  assert.throws(() => loadConfig(["--max-streams", "2.5"], {}), /--max-streams: expected a whole number/);
  assert.throws(() => loadConfig(["--watch-buffer", "0"], {}), /--watch-buffer/);
  assert.throws(() => loadConfig(["--watch-poll-ms", "1"], {}), /--watch-poll-ms/);
});
