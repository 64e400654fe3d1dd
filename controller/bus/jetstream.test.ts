import assert from "node:assert/strict";
import { test } from "node:test";
import { withJetStreamRetry } from "./jetstream.js";

const failing = (codes: string[]) => {
  let calls = 0;
  const fn = async () => {
    const code = codes[calls++];
    if (code) throw Object.assign(new Error(code), { code });
    return calls;
  };
  return { fn, calls: () => calls };
};

test("a JetStream request that timed out is asked again, with backoff, until it answers", async () => {
  const f = failing(["TIMEOUT", "503"]);
  assert.equal(await withJetStreamRetry(f.fn, 4, 1), 3);
  assert.equal(f.calls(), 3);
});

test("other errors are not retried, and the attempts are bounded", async () => {
  const refused = failing(["10059"]);
  await assert.rejects(withJetStreamRetry(refused.fn, 4, 1), /10059/);
  assert.equal(refused.calls(), 1);
  const down = failing(["TIMEOUT", "TIMEOUT", "TIMEOUT", "TIMEOUT", "TIMEOUT"]);
  await assert.rejects(withJetStreamRetry(down.fn, 3, 1), /TIMEOUT/);
  assert.equal(down.calls(), 3);
});
