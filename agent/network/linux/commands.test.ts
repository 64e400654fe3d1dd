import assert from "node:assert/strict";
import { test } from "node:test";
import { CommandError, Runner } from "./commands.js";

test("a failed command is a retryable NETWORK_COMMAND_FAILED with its exit code and stderr", async () => {
  const run = new Runner(undefined);
  await assert.rejects(run.run({ file: "sh", args: ["-c", "echo 'no such bridge' >&2; exit 3"] }), (err: unknown) => {
    assert.ok(err instanceof CommandError);
    assert.equal(err.code, "NETWORK_COMMAND_FAILED");
    assert.equal(err.retryable, true);
    assert.equal(err.exitCode, 3);
    assert.match(err.message, /^sh -c .* exited with 3: no such bridge$/);
    return true;
  });
});

test("input goes to stdin; stdout is the result", async () => {
  assert.equal(await new Runner(undefined).run({ file: "cat", args: [], input: "add table inet t\n" }), "add table inet t\n");
});

test("a command that outlives its timeout is killed", async () => {
  await assert.rejects(new Runner(undefined, 100).run({ file: "sleep", args: ["5"] }), (err: unknown) => {
    assert.ok(err instanceof CommandError);
    assert.equal(err.exitCode, null);
    assert.match(err.message, /killed/);
    return true;
  });
});

test("in a namespace, commands run under ip netns exec", async () => {
  await assert.rejects(new Runner("nm-no-such-namespace").run({ file: "true", args: [] }), (err: unknown) => {
    assert.ok(err instanceof CommandError);
    assert.match(err.message, /^ip netns exec nm-no-such-namespace true exited/);
    return true;
  });
});
