/** The volume backend contract against the file backend: real qcow2 files, real export daemons with TLS. */
import assert from "node:assert/strict";
import { after } from "node:test";
import type { VolumeBackend } from "../backend.js";
import { POOL_BYTES, volumeBackendContract } from "../contract.js";
import type { FileVolumeBackendOptions } from "./options.js";
import { FileLab, fileBackendSkip, firstByte, nbdSize, qemuIoFile } from "./test-qemu.js";

const skip = fileBackendSkip();
const lab = skip ? undefined : await FileLab.make();
after(() => lab?.cleanup());
/** Client certificate directories, by host name. */
const clients = new Map<string, Promise<string>>();
const clientDir = (host: string): Promise<string> => {
  assert.ok(lab);
  let dir = clients.get(host);
  if (!dir) clients.set(host, (dir = lab.pki.client(host)));
  return dir;
};

const made = new WeakMap<VolumeBackend, FileVolumeBackendOptions>();

async function pathOf(b: VolumeBackend, id: string): Promise<string> {
  const v = (await b.list()).volumes.find((x) => x.id === id);
  assert.ok(v, `volume ${id} is listed`);
  const options = made.get(b);
  const pool = options?.pools.find((p) => p.name === v.pool);
  assert.ok(pool);
  return `${pool.path}/${id}.qcow2`;
}

volumeBackendContract("file", {
  skip,
  make: async () => {
    assert.ok(lab);
    const options = lab.options(POOL_BYTES);
    const b = lab.backend(options);
    made.set(b, options);
    return b;
  },
  restart: async (closed) => {
    const options = made.get(closed);
    assert.ok(options && lab);
    const b = lab.backend(options);
    made.set(b, options);
    return b;
  },
  cleanup: async () => undefined,
  write: async (b, id, byte, offset = 0) => {
    await qemuIoFile(await pathOf(b, id), [`write -P 0x${byte.toString(16)} ${offset} 64k`]);
  },
  read: async (b, id, offset = 0) => firstByte(await qemuIoFile(await pathOf(b, id), [`read -v ${offset} 1`], true)),
  exportedSize: async (_b, e, as = e.client) => nbdSize(e, await clientDir(as)),
});
