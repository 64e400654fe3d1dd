import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { OpJournal, type FinishedEntry } from "./journal.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "journal-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const finished = (opId: string): FinishedEntry => ({
  t: "finished",
  opId,
  serverId: "s",
  powerState: "RUNNING",
  startTime: new Date().toISOString(),
  finishTime: new Date().toISOString(),
});

test("entries survive a reopen and a torn last line is dropped", async () => {
  const path = join(dir, "j.jsonl");
  const j1 = await OpJournal.open(path, { fsync: false });
  await j1.append({ t: "started", opId: "a", serverId: "s", kind: "spawn", time: new Date().toISOString() });
  await j1.append(finished("a"));
  await j1.append({ t: "started", opId: "b", serverId: "s", kind: "destroy", time: new Date().toISOString() });
  await j1.close();
  await appendFile(path, '{"t":"finished","opId":"b","serv'); // crash mid-write

  const j2 = await OpJournal.open(path, { fsync: false });
  assert.equal(j2.get("a")?.finished?.powerState, "RUNNING");
  assert.ok(j2.get("b")?.started && !j2.get("b")?.finished);
  await j2.append(finished("c"));
  await j2.close();
  const lines = (await readFile(path, "utf8")).trim().split("\n");
  assert.doesNotThrow(() => lines.map((l) => JSON.parse(l)), "new entries are not glued to the torn line");
});

test("the journal is trimmed to the newest maxOps finished ops and keeps unfinished ones", async () => {
  const path = join(dir, "j.jsonl");
  const j = await OpJournal.open(path, { maxOps: 10, fsync: false });
  await j.append({ t: "started", opId: "old-unfinished", serverId: "s", kind: "spawn", time: "" });
  for (let i = 0; i < 200; i++) await j.append(finished(`op-${i}`));
  const lines = (await readFile(path, "utf8")).trim().split("\n");
  assert.ok(lines.length <= 4 * 10 + 1, `file has ${lines.length} lines`);
  assert.ok(j.get("op-199")?.finished, "the newest op is kept");
  assert.equal(j.get("op-0"), undefined, "the oldest op is dropped");
  assert.ok(j.get("old-unfinished")?.started, "an unfinished op is never dropped");
  await j.close();
  const reopened = await OpJournal.open(path, { maxOps: 10, fsync: false });
  assert.ok(reopened.get("op-199")?.finished && reopened.get("old-unfinished")?.started);
  assert.ok(reopened.size <= 11);
  await reopened.close();
});

test("concurrent appends share writes and all land on disk", async () => {
  const path = join(dir, "j.jsonl");
  const j = await OpJournal.open(path);
  await Promise.all(Array.from({ length: 50 }, (_, i) => j.append(finished(`op-${i}`))));
  await j.close();
  const reopened = await OpJournal.open(path);
  assert.equal(reopened.size, 50);
  await reopened.close();
});
