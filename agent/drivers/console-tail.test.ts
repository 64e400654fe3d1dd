import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { lastLines, readFileTail, tailBytes } from "./console-tail.js";

const enc = (s: string) => new TextEncoder().encode(s);

test("tailBytes keeps whole lines from the end, or the cut end of one long line", () => {
  assert.equal(tailBytes(enc("one\ntwo\nthree\n"), 100), "one\ntwo\nthree\n");
  assert.equal(tailBytes(enc("one\ntwo\nthree\n"), 10), "two\nthree\n", "a cut exactly at a line start keeps that line");
  assert.equal(tailBytes(enc("one\ntwo\nthree\n"), 9), "three\n", "the cut line 'wo' is dropped");
  assert.equal(tailBytes(enc("one\ntwo\n"), 4), "two\n");
  assert.equal(tailBytes(enc("abcdefghij"), 4), "ghij", "one line longer than the limit is cut");
  assert.equal(tailBytes(enc("aé\nb\n"), 4), "b\n", "a line cut inside a multi-byte character is dropped whole");
});

test("readFileTail reads only the end of a file and treats a missing file as empty", async () => {
  const dir = await mkdtemp(join(tmpdir(), "console-tail-"));
  try {
    const path = join(dir, "console.log");
    const lines = Array.from({ length: 5000 }, (_, i) => `line ${i}`).join("\n") + "\n";
    await writeFile(path, lines);
    const tail = await readFileTail(path, 100);
    assert.ok(Buffer.byteLength(tail) <= 100);
    assert.ok(tail.endsWith("line 4999\n"));
    assert.match(tail, /^line \d+\n/, "starts at a line start");
    assert.equal(await readFileTail(path, 10 * lines.length), lines);
    assert.equal(await readFileTail(join(dir, "none"), 100), "");
    await writeFile(path, "one\ntwo\n");
    assert.equal(await readFileTail(path, 4), "two\n");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("lastLines counts lines from the end, a trailing newline not being one", () => {
  assert.equal(lastLines("a\nb\nc\n", 2), "b\nc\n");
  assert.equal(lastLines("a\nb\nc", 2), "b\nc");
  assert.equal(lastLines("a\nb\nc\n", 3), "a\nb\nc\n");
  assert.equal(lastLines("a\nb\nc\n", 10), "a\nb\nc\n");
  assert.equal(lastLines("a\nb\nc\n", 0), "a\nb\nc\n", "0 means all");
  assert.equal(lastLines("", 5), "");
});
