/**
 * Client side of ImageService's data calls: upload a file as the bytes of a
 * queued image, download an image's bytes to a file. Streams in 1 MiB
 * chunks with backpressure; used by the demo seed and the tests, and an
 * example for SDK users.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import { stat } from "node:fs/promises";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type * as grpc from "@grpc/grpc-js";
import type { Image, ImageServiceClient, UploadImageDataRequest } from "../gen/novamesh/compute/v1/image.js";

const CHUNK_BYTES = 1024 * 1024;

/**
 * Uploads `file` as the bytes of QUEUED image `imageId`. `checksum`, when
 * given, is sent in the header and checked by the server; `onProgress`
 * hears the bytes sent so far (and the total) after each chunk.
 */
export async function uploadImageFile(
  client: ImageServiceClient,
  metadata: grpc.Metadata,
  imageId: string,
  file: string,
  opts: { checksum?: string; onProgress?: (sent: number, total: number) => void } = {},
): Promise<Image> {
  const { size } = await stat(file);
  let call!: grpc.ClientWritableStream<UploadImageDataRequest>;
  const done = new Promise<Image>((resolve, reject) => {
    call = client.uploadImageData(metadata, (err, res) => (err ? reject(err) : resolve(res!.image!)));
  });
  // The call's error is the upload's result: `done` carries it to the caller
  // (returned below). Until then it only stops the writing.
  let ended = false;
  const end = () => {
    ended = true;
  };
  done.then(end, end);
  call.on("error", end);
  const send = async (msg: UploadImageDataRequest) => {
    if (ended) return;
    if (!call.write(msg)) await Promise.race([once(call, "drain"), new Promise<void>((resolve) => done.then(() => resolve(), () => resolve()))]);
  };
  await send({ part: { $case: "header", header: { imageId, sizeBytes: size, checksum: opts.checksum ?? "" } } });
  let sent = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: CHUNK_BYTES })) {
    await send({ part: { $case: "chunk", chunk } });
    sent += (chunk as Buffer).length;
    opts.onProgress?.(sent, size);
  }
  call.end();
  return done;
}

/**
 * Downloads the bytes of image `imageId` to `file`; resolves with the image
 * record. `onProgress` hears the bytes received so far and the image's
 * size after each chunk; with `exclusive` the file must not exist yet.
 */
export async function downloadImageFile(
  client: ImageServiceClient,
  metadata: grpc.Metadata,
  imageId: string,
  file: string,
  opts: { onProgress?: (received: number, total: number) => void; exclusive?: boolean } = {},
): Promise<Image> {
  const call = client.downloadImageData({ id: imageId }, metadata);
  let image: Image | undefined;
  let received = 0;
  // exclusive: the file must be new (never written over, not even through a link made meanwhile).
  const out = createWriteStream(file, { flags: opts.exclusive ? "wx" : "w" });
  await pipeline(
    call,
    async function* (messages: AsyncIterable<{ part?: { $case: "image"; image: Image } | { $case: "chunk"; chunk: Buffer } }>) {
      for await (const m of messages) {
        if (m.part?.$case === "image") image = m.part.image;
        else if (m.part?.$case === "chunk") {
          received += m.part.chunk.length;
          opts.onProgress?.(received, image?.sizeBytes ?? 0);
          yield m.part.chunk;
        }
      }
    },
    out as Writable,
  );
  if (!image) throw new Error(`DownloadImageData ${imageId}: the stream carried no image`);
  return image;
}
