/**
 * `novamesh image list|show|create|save|delete`. `create --file` registers
 * the image and uploads the file with a progress bar (progress lines where
 * stderr is not a terminal), the SHA-256 computed here and checked by the
 * controller; `save` downloads an image's bytes and checks them against
 * its checksum.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { ImageServiceClient, ImageVisibility, type Image, type RegisterImageResponse } from "../gen/novamesh/compute/v1/image.js";
import { downloadImageFile, uploadImageFile } from "../scripts/image-files.js";
import { asCallError, unary } from "./connection.js";
import { UsageError, printOne, type Row } from "./output.js";
import { callCommand, integer, listCommand, many, out, pairs, session } from "./session.js";
import { viewOf } from "./view.js";

const MIB = 1024 * 1024;
const mib = (n: number) => `${(n / MIB).toFixed(1)} MiB`;

/** Reports a transfer on stderr: a bar on a terminal, a line at each tenth otherwise. */
function progress(verb: string): { update: (done: number, total: number) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    const bar = new SingleBar({ format: `${verb} [{bar}] {percentage}% | {done} of {size} | {speed}`, stream: process.stderr, hideCursor: true });
    const start = Date.now();
    let started = false;
    return {
      update: (done, total) => {
        const payload = { done: mib(done), size: mib(total), speed: `${mib(done / Math.max((Date.now() - start) / 1000, 0.001))}/s` };
        if (!started) bar.start(Math.max(total, 1), 0, payload);
        started = true;
        bar.update(done, payload);
      },
      stop: () => bar.stop(),
    };
  }
  let shown = -1;
  return {
    update: (done, total) => {
      const tenth = total > 0 ? Math.floor((done / total) * 10) : -1;
      if (tenth <= shown) return;
      shown = tenth;
      process.stderr.write(`${verb} ${tenth * 10}% (${mib(done)} of ${mib(total)})\n`);
    },
    stop: () => undefined,
  };
}

/** A file option that cannot be read or written, as a usage mistake naming it. */
function fileError(option: string, path: string, err: NodeJS.ErrnoException): UsageError {
  const why = { ENOENT: "no such file or directory", EISDIR: "is a directory", EACCES: "permission denied", EEXIST: "exists: an image is not written over another file" }[err.code ?? ""];
  return new UsageError(`${option} ${path}: ${why ?? err.message}`);
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const imageView = (images: ImageServiceClient, image: Image): Row => viewOf(images, "getImage", { image }).image as Row;

export function addImages(root: Command): void {
  const image = root.command("image").description("images servers boot from");
  listCommand(image, "list", "the images the project may use", {
    client: ImageServiceClient,
    method: "listImages",
    request: () => ({ pageSize: 1000 }),
    field: "images",
    columns: ["id", "name", "status", "visibility", "disk_format", "size_bytes"],
  });
  callCommand(image, "show <id>", "one image", { client: ImageServiceClient, method: "getImage", request: ([id]) => ({ id }), field: "image" });
  callCommand(image, "delete <id>", "delete an image (servers built from it keep running)", { client: ImageServiceClient, method: "deleteImage", request: ([id]) => ({ id }) });
  image
    .command("create <name>")
    .description("register an image and, with --file, upload its bytes with a progress bar")
    .option("--file <path>", "the image's bytes")
    .option("--disk-format <format>", "qcow2 or raw", "qcow2")
    .option("--container-format <format>", "bare", "bare")
    .option("--public", "visible to every project (admins)")
    .option("--min-disk <gb>", "the smallest root disk it boots from")
    .option("--min-ram <mb>", "the least memory it boots with")
    .option("--property <key=value>", "a property (repeat)", many, [] as string[])
    .action(async (name: string, o: CreateImageOptions, cmd: Command) => {
      // The file is read through once before anything is registered: a missing or unreadable one leaves nothing behind.
      const checksum = o.file ? await sha256Of(o.file).catch((err: NodeJS.ErrnoException) => Promise.reject(fileError("--file", o.file!, err))) : "";
      const s = session(cmd);
      const images = s.client(ImageServiceClient);
      const registered = await unary<RegisterImageResponse>(s.c, images, "registerImage", {
        image: {
          name,
          diskFormat: o.diskFormat,
          containerFormat: o.containerFormat,
          visibility: o.public ? ImageVisibility.IMAGE_VISIBILITY_PUBLIC : ImageVisibility.IMAGE_VISIBILITY_PRIVATE,
          minDiskGb: integer("--min-disk", o.minDisk, 0) ?? 0,
          minRamMb: integer("--min-ram", o.minRam, 0) ?? 0,
          properties: pairs("--property", o.property),
        },
        upload: o.file !== undefined,
      });
      let result = registered.image!;
      if (o.file) {
        const bar = progress("uploading");
        const queued = result.id;
        let failure: unknown;
        try {
          result = await uploadImageFile(images, s.c.metadata(), queued, o.file, { checksum, onProgress: bar.update });
        } catch (err) {
          failure = err;
        } finally {
          bar.stop();
        }
        if (failure !== undefined) {
          // The image was registered for these bytes only: it goes with the failed upload.
          await unary(s.c, images, "deleteImage", { id: queued }).catch((e: unknown) =>
            process.stderr.write(`novamesh: the queued image ${queued} could not be deleted: ${(e as Error).message}\n`),
          );
          throw asCallError(failure);
        }
        if (result.checksum !== checksum) throw new Error(`the controller stored SHA-256 ${result.checksum}, not the file's ${checksum}`);
        process.stderr.write(`uploaded ${mib(result.sizeBytes)}, SHA-256 ${checksum} matches\n`);
      }
      out(printOne(imageView(images, result), s.output));
    });
  image
    .command("save <id>")
    .description("download an image's bytes to a file, checked against its checksum")
    .requiredOption("--file <path>", "where to write them (a new file)")
    .action(async (id: string, o: { file: string }, cmd: Command) => {
      if (existsSync(o.file)) throw new UsageError(`--file ${o.file} exists: an image is not written over another file`);
      const s = session(cmd);
      const images = s.client(ImageServiceClient);
      const bar = progress("downloading");
      let saved: Image;
      try {
        saved = await downloadImageFile(images, s.c.metadata(), id, o.file, { onProgress: bar.update, exclusive: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (typeof code === "string") {
          // The file could not be made (it appeared meanwhile, its directory is missing, no permission): not ours to remove.
          if (code !== "EEXIST") await rm(o.file, { force: true });
          throw fileError("--file", o.file, err as NodeJS.ErrnoException);
        }
        await rm(o.file, { force: true });
        throw asCallError(err);
      } finally {
        bar.stop();
      }
      const checksum = await sha256Of(o.file);
      if (checksum !== saved.checksum) {
        await rm(o.file, { force: true });
        throw new Error(`the bytes received have SHA-256 ${checksum}, the image's is ${saved.checksum}: ${o.file} removed`);
      }
      process.stderr.write(`saved ${mib(saved.sizeBytes)} to ${o.file}, SHA-256 ${checksum} matches\n`);
    });
}

interface CreateImageOptions {
  file?: string;
  diskFormat: string;
  containerFormat: string;
  public?: boolean;
  minDisk?: string;
  minRam?: string;
  property: string[];
}
