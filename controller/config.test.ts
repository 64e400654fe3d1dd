import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, DEFAULT_CONFIG, loadConfig } from "./config.js";

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
