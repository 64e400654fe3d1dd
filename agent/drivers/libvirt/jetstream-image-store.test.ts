import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NatsConnection } from "nats";
import { tryConnect } from "../../bus/nats-test-util.js";
import { DriverError } from "../errors.js";
import { hashFile } from "./image-store.js";
import { JetStreamImageStore } from "./jetstream-image-store.js";

describe("JetStream image store", () => {
  let nc: NatsConnection | undefined;
  let dir: string;
  const bucket = `images_test_${randomUUID().slice(0, 8)}`;

  before(async () => {
    nc = await tryConnect();
    dir = await mkdtemp(join(tmpdir(), "js-image-store-"));
  });
  after(async () => {
    if (nc) {
      // A run whose tests were skipped made no bucket.
      await (await nc.jetstreamManager()).streams.delete(`OBJ_${bucket}`).catch((err: unknown) => {
        if (!/not found/i.test((err as Error).message)) throw err;
      });
      await nc.close();
    }
    await rm(dir, { recursive: true, force: true });
  });

  test("a file stored is read back byte for byte, with the size and SHA-256 of its bytes; delete removes it", async (t) => {
    if (!nc) return t.skip("no NATS server");
    const store = new JetStreamImageStore({ nats: nc, bucket });
    const source = join(dir, "image.qcow2");
    await writeFile(source, randomBytes(3 * 1024 * 1024 + 17)); // several object store chunks and a partial one
    const expected = await hashFile(source);
    assert.deepEqual(await store.put("img-1", source), expected);
    const copy = join(dir, "copy");
    assert.deepEqual(await store.get("img-1", copy), expected);
    assert.ok((await readFile(copy)).equals(await readFile(source)));
    await store.delete("img-1");
    await store.delete("img-1");
    await assert.rejects(store.get("img-1", copy), (err: unknown) => err instanceof DriverError && err.code === "IMAGE_NOT_FOUND");
  });

  test("an unknown object is IMAGE_NOT_FOUND and leaves no file", async (t) => {
    if (!nc) return t.skip("no NATS server");
    const store = new JetStreamImageStore({ nats: nc, bucket });
    const dest = join(dir, "never");
    await assert.rejects(store.get("nope", dest), (err: unknown) => err instanceof DriverError && err.code === "IMAGE_NOT_FOUND" && !err.retryable);
    await assert.rejects(readFile(dest), { code: "ENOENT" });
  });

  test("an aborted put or get rejects with a retryable ABORTED", async (t) => {
    if (!nc) return t.skip("no NATS server");
    const store = new JetStreamImageStore({ nats: nc, bucket });
    const source = join(dir, "aborted.qcow2");
    await writeFile(source, randomBytes(64 * 1024));
    const aborted = (err: unknown) => err instanceof DriverError && err.code === "ABORTED" && err.retryable;
    await assert.rejects(store.put("img-aborted", source, { signal: AbortSignal.abort() }), aborted);
    await store.put("img-aborted", source);
    await assert.rejects(store.get("img-aborted", join(dir, "aborted-copy"), { signal: AbortSignal.abort() }), aborted);
    await assert.rejects(readFile(join(dir, "aborted-copy")), { code: "ENOENT" });
  });
});
