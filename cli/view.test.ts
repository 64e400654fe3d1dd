import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ImageServiceClient, ImageStatus, Image } from "../gen/novamesh/compute/v1/image.js";
import { VolumeServiceClient, VolumeStatus, Volume } from "../gen/novamesh/volume/v1/volume.js";
import { readCloud } from "./connection.js";
import { UsageError } from "./output.js";
import { requestOf, viewOf } from "./view.js";

const credentials = grpc.credentials.createInsecure();

describe("views of responses", () => {
  test("proto field names, enum values without their prefix, 64-bit integers as numbers, timestamps as RFC 3339", () => {
    const images = new ImageServiceClient("127.0.0.1:1", credentials);
    const image = Image.fromPartial({ id: "i1", name: "debian", status: ImageStatus.IMAGE_STATUS_ACTIVE, sizeBytes: 20971520, createTime: new Date("2026-01-02T03:04:05Z"), properties: { os: "linux" } });
    const view = viewOf(images, "getImage", { image }).image as Record<string, unknown>;
    assert.deepEqual(
      [view.status, view.visibility, view.size_bytes, view.create_time, view.properties, view.min_disk_gb],
      ["ACTIVE", "", 20971520, "2026-01-02T03:04:05Z", { os: "linux" }, 0],
    );
    const volumes = new VolumeServiceClient("127.0.0.1:1", credentials);
    const listed = viewOf(volumes, "listVolumes", { volumes: [Volume.fromPartial({ id: "v1", status: VolumeStatus.VOLUME_STATUS_IN_USE, sizeGb: 2 })], nextPageToken: "" });
    assert.deepEqual((listed.volumes as Record<string, unknown>[]).map((v) => [v.status, v.size_gb, v.attachments]), [["IN_USE", 2, []]]);
    images.close();
    volumes.close();
  });

  test("requests get every field left out at its default, in nested messages too", () => {
    const images = new ImageServiceClient("127.0.0.1:1", credentials);
    const req = requestOf(images, "registerImage", { image: { name: "x", diskFormat: "raw" } }) as { upload: boolean; image: Record<string, unknown> };
    assert.equal(req.upload, false);
    assert.deepEqual([req.image.name, req.image.id, req.image.sizeBytes, req.image.properties, req.image.createTime], ["x", "", 0, {}, undefined]);
    images.close();
  });
});

describe("the clouds file", () => {
  const dir = mkdtempSync(join(tmpdir(), "clouds-"));
  const file = join(dir, "clouds.yaml");
  writeFileSync(join(dir, "lab-token"), "s3cret\n");
  writeFileSync(file, "clouds:\n  lab:\n    url: ctl:8774\n    token_file: lab-token\n    ca: ca.pem\n    tls_server_name: controller\n  both:\n    token: a\n    token_file: lab-token\n  odd:\n    plaintext: yes-please\n");

  test("a cloud's settings, its paths relative to the file", () => {
    assert.deepEqual(readCloud("lab", file), { url: "ctl:8774", token: "s3cret", ca: join(dir, "ca.pem"), tlsServerName: "controller" });
  });

  test("mistakes name the file, the cloud and the key", () => {
    assert.throws(() => readCloud("nope", file), (e: Error) => e instanceof UsageError && /no cloud "nope" in .*clouds: lab, both, odd/.test(e.message));
    assert.throws(() => readCloud("both", file), /clouds\.both has both token and token_file/);
    assert.throws(() => readCloud("odd", file), /clouds\.odd\.plaintext must be a boolean/);
    assert.throws(() => readCloud("lab", join(dir, "missing.yaml")), (e: Error) => e instanceof UsageError && /missing\.yaml/.test(e.message));
  });
});
