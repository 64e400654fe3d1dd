/**
 * Image bytes through ImageService: upload (client stream, size and
 * checksum verified), download, and what the image store holds afterwards.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { connect, type NatsConnection, type ObjectStore } from "nats";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { Image, ImageStatus, ImageVisibility, type UploadImageDataRequest } from "../gen/novamesh/compute/v1/image.js";
import { downloadImageFile, uploadImageFile } from "../scripts/image-files.js";
import { NATS_URL, failure, type Clients } from "./harness.js";
import { stack } from "./stack.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("image data", () => {
  const fx = stack({ name: "images", members: [], images: [] });
  const { env, admin, dir } = fx;
  let nc: NatsConnection;
  let bucket: ObjectStore;
  /** 3.5 MiB of random bytes: several chunks, the last one partial. */
  const data = randomBytes(3.5 * 1024 * 1024);
  let file: string;

  before(async () => {
    file = join(dir, "data.img");
    await writeFile(file, data);
    nc = await connect({ servers: NATS_URL });
    bucket = await nc.jetstream().views.os(env.imageBucket);
  });
  after(() => nc?.close());

  const queued = async (c: Clients = admin, over: Partial<Image> = {}) =>
    (await c.images.registerImage({ image: Image.fromPartial({ name: "disk", visibility: ImageVisibility.IMAGE_VISIBILITY_PRIVATE, ...over }), upload: true })).image!;
  const upload = (id: string, path = file, opts: { checksum?: string } = {}, c: Clients = admin) =>
    uploadImageFile(c.images.raw, c.images.metadata(), id, path, opts);
  const download = (id: string, to: string, c: Clients = admin) => downloadImageFile(c.images.raw, c.images.metadata(), id, to);
  const stored = async (id: string) => {
    const info = await bucket.info(id);
    return info !== null && !info.deleted;
  };

  test("an image registered for upload is QUEUED and cannot boot until its bytes are stored; then it is ACTIVE and downloads byte for byte", async () => {
    const img = await queued();
    assert.equal(img.status, ImageStatus.IMAGE_STATUS_QUEUED);
    assert.equal(img.hasData, false);
    const boot = await failure(admin.servers.createServer({ name: "early", flavorId: "m1.small", imageId: img.id }));
    assert.equal(boot.code, status.INVALID_ARGUMENT);
    assert.deepEqual(boot.fields, ["image_id"]);

    const done = await upload(img.id, file, { checksum: sha256(data) });
    assert.equal(done.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    assert.equal(done.hasData, true);
    assert.equal(done.sizeBytes, data.length);
    assert.equal(done.checksum, sha256(data));
    assert.deepEqual((await admin.images.getImage({ id: img.id })).image, done);

    const back = join(dir, "back.img");
    const meta = await download(img.id, back);
    assert.equal(meta.id, img.id);
    assert.ok((await readFile(back)).equals(data), "the downloaded bytes are the uploaded ones");

    const again = await failure(upload(img.id));
    assert.equal(again.code, status.FAILED_PRECONDITION);
    assert.equal(again.reason, "IMAGE_NOT_QUEUED");
  });

  test("the checksum and size registered with the image are what the upload must match", async () => {
    const img = await queued(admin, { checksum: sha256(data), sizeBytes: data.length });
    const other = join(dir, "other.img");
    await writeFile(other, randomBytes(data.length));
    const wrong = await failure(upload(img.id, other));
    assert.equal(wrong.code, status.INVALID_ARGUMENT);
    assert.deepEqual(wrong.fields, ["header.checksum"]);
    assert.match(wrong.message, /SHA-256/);
    // Nothing is kept, and the image can take the right bytes.
    assert.equal((await admin.images.getImage({ id: img.id })).image!.status, ImageStatus.IMAGE_STATUS_QUEUED);
    assert.equal(await stored(img.id), false, "the rejected bytes are not in the store");
    assert.equal((await upload(img.id)).status, ImageStatus.IMAGE_STATUS_ACTIVE);

    const short = await queued(admin, { sizeBytes: data.length + 1 });
    const size = await failure(upload(short.id));
    assert.equal(size.code, status.INVALID_ARGUMENT);
    assert.deepEqual(size.fields, ["header.size_bytes"], size.message);
    assert.equal(await stored(short.id), false);
  });

  test("a malformed upload is refused with the field named and leaves the image QUEUED", async () => {
    const img = await queued();
    const raw = (msgs: UploadImageDataRequest[]) =>
      new Promise<void>((resolve, reject) => {
        const call = admin.images.raw.uploadImageData(admin.images.metadata(), (err) => (err ? reject(err) : resolve()));
        for (const m of msgs) call.write(m);
        call.end();
      });
    const noHeader = await failure(raw([{ part: { $case: "chunk", chunk: Buffer.from("x") } }]));
    assert.equal(noHeader.code, status.INVALID_ARGUMENT);
    assert.deepEqual(noHeader.fields, ["header"]);
    const badId = await failure(raw([{ part: { $case: "header", header: { imageId: "nope", sizeBytes: 0, checksum: "" } } }]));
    assert.deepEqual(badId.fields, ["header.image_id"]);
    const badSum = await failure(raw([{ part: { $case: "header", header: { imageId: img.id, sizeBytes: 0, checksum: "ABC" } } }]));
    assert.deepEqual(badSum.fields, ["header.checksum"]);
    const twoHeaders = await failure(
      raw([
        { part: { $case: "header", header: { imageId: img.id, sizeBytes: 0, checksum: "" } } },
        { part: { $case: "header", header: { imageId: img.id, sizeBytes: 0, checksum: "" } } },
      ]),
    );
    assert.deepEqual(twoHeaders.fields, ["chunk"]);
    const empty = await failure(raw([{ part: { $case: "header", header: { imageId: img.id, sizeBytes: 0, checksum: "" } } }]));
    assert.deepEqual(empty.fields, ["chunk"], empty.message);
    const huge = await failure(
      raw([{ part: { $case: "header", header: { imageId: img.id, sizeBytes: 0, checksum: "" } } }, { part: { $case: "chunk", chunk: Buffer.alloc(1024 * 1024 + 1) } }]),
    );
    assert.deepEqual(huge.fields, ["chunk"]);
    assert.equal((await admin.images.getImage({ id: img.id })).image!.status, ImageStatus.IMAGE_STATUS_QUEUED);
    const missing = await failure(upload("6a3c1ab0-0000-4000-8000-000000000000"));
    assert.equal(missing.code, status.NOT_FOUND);
  });

  test("only one upload of an image runs at a time, and one whose controller died can be repeated", async () => {
    const img = await queued();
    // An upload that sent its header and is still streaming.
    const held = admin.images.raw.uploadImageData(admin.images.metadata(), () => undefined);
    held.write({ part: { $case: "header", header: { imageId: img.id, sizeBytes: 0, checksum: "" } } });
    held.write({ part: { $case: "chunk", chunk: Buffer.from("first bytes") } });
    await waitStatus(admin, img.id, ImageStatus.IMAGE_STATUS_SAVING);
    const second = await failure(upload(img.id));
    assert.equal(second.code, status.ABORTED);
    assert.equal(second.reason, "UPLOAD_IN_PROGRESS");
    held.cancel();
    await waitStatus(admin, img.id, ImageStatus.IMAGE_STATUS_QUEUED);
    assert.equal(await stored(img.id), false, "a cancelled upload keeps nothing");

    // A SAVING image whose upload stopped beating long ago (its controller died) takes a new upload.
    await env.sql("UPDATE images SET status = 'saving', upload_heartbeat_at = CURRENT_TIMESTAMP(3) - INTERVAL 1 HOUR WHERE id = ?", [img.id]);
    assert.equal((await upload(img.id)).status, ImageStatus.IMAGE_STATUS_ACTIVE);
  });

  test("another project can neither upload to nor download a private image; uploading a public one needs its owner", async () => {
    const img = await queued();
    const other = await env.as(env.controllers[0]!, "other-project", Role.ROLE_MEMBER);
    assert.equal((await failure(upload(img.id, file, {}, other))).code, status.NOT_FOUND);
    const pub = await queued(admin, { visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC });
    assert.equal((await failure(upload(pub.id, file, {}, other))).code, status.PERMISSION_DENIED);
    await upload(img.id);
    assert.equal((await failure(download(img.id, join(dir, "x"), other))).code, status.NOT_FOUND);
  });

  test("downloading an image without bytes says so; damaged bytes in the store end the download with DATA_LOSS", async () => {
    const meta = (await admin.images.registerImage({ image: Image.fromPartial({ name: "metadata-only" }), upload: false })).image!;
    assert.equal(meta.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    const none = await failure(download(meta.id, join(dir, "none")));
    assert.equal(none.code, status.FAILED_PRECONDITION);
    assert.equal(none.reason, "IMAGE_HAS_NO_DATA");

    const img = await queued();
    await upload(img.id);
    await bucket.put({ name: img.id }, readableOf(randomBytes(1000)));
    const bad = await failure(download(img.id, join(dir, "bad")));
    assert.equal(bad.code, status.DATA_LOSS);
    assert.match(bad.message, /SHA-256/);
  });

  test("deleting an image deletes its bytes", async () => {
    const img = await queued();
    await upload(img.id);
    assert.equal(await stored(img.id), true);
    await admin.images.deleteImage({ id: img.id });
    for (let i = 0; i < 50 && (await stored(img.id)); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await stored(img.id), false);
  });
});

async function waitStatus(c: Clients, id: string, want: ImageStatus): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await c.images.getImage({ id })).image!.status === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`image ${id} never reached ${ImageStatus[want]}`);
}

function readableOf(b: Buffer): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      c.enqueue(new Uint8Array(b));
      c.close();
    },
  });
}
