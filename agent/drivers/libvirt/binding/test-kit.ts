/**
 * What the binding's tests share: whether the addon loaded, a private
 * test host's node XML, a test domain's XML, and assertions on libvirt
 * errors and on things that happen soon.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  ADDON_PATH,
  LibvirtError,
  tryLoadLibvirt,
  type LibvirtBinding,
} from "./index.js";

export const loaded = tryLoadLibvirt();
const required = process.env.LIBVIRT_BINDING_REQUIRED === "1";
export const skip = loaded instanceof Error && !required ? `libvirt binding not built (${ADDON_PATH})` : false;

/** The node XML of a private test host: 8 CPUs (1 socket × 4 cores × 2 threads) at 2400 MHz, 16 GiB. */
export const NODE_XML = `<?xml version="1.0"?>
<node>
  <cpu>
    <mhz>2400</mhz>
    <model>x86_64</model>
    <active>8</active>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>4</cores>
    <threads>2</threads>
  </cpu>
  <memory>16777216</memory>
  <domain type="test">
    <name>preexisting</name>
    <uuid>6f1c8e0e-7d4b-4b0e-9a55-0c2b3c4d5e6f</uuid>
    <memory>1048576</memory>
    <vcpu>2</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
`;

export function domainXml(name: string, memoryKiB = 524288, vcpus = 2): string {
  return `<domain type='test'>
  <name>${name}</name>
  <memory unit='KiB'>${memoryKiB}</memory>
  <vcpu>${vcpus}</vcpu>
  <os><type>hvm</type></os>
</domain>`;
}

/** Asserts that `p` rejects with a LibvirtError with these fields; returns it. */
export async function rejectsWith(
  p: Promise<unknown>,
  expected: { code: number; codeName?: string; domain?: number; fromBinding?: boolean; message?: RegExp },
): Promise<LibvirtError> {
  let error: unknown;
  try {
    await p;
  } catch (e) {
    error = e;
  }
  assert.ok(error !== undefined, "expected a rejection");
  assert.ok(error instanceof LibvirtError, `expected a LibvirtError, got ${String(error)}`);
  assert.equal(error.code, expected.code, `code (${error.codeName}: ${error.message})`);
  if (expected.codeName !== undefined) assert.equal(error.codeName, expected.codeName);
  if (expected.domain !== undefined) assert.equal(error.domain, expected.domain, `domain (${error.domainName})`);
  if (expected.fromBinding !== undefined) assert.equal(error.fromBinding, expected.fromBinding);
  if (expected.message !== undefined) assert.match(error.message, expected.message);
  return error;
}

let uniq = 0;
export const uniqueName = (prefix: string) => `${prefix}-${process.pid}-${++uniq}`;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** The loaded binding (the suites run only when it loaded). */
export function binding(): LibvirtBinding {
  if (loaded instanceof Error) throw loaded;
  return loaded;
}

/** A test file's scratch directory, with a private test host's node file (each open of `nodeUri` is a host of its own). */
export interface Scratch {
  readonly dir: string;
  readonly nodeUri: string;
  remove(): void;
}

export function scratch(): Scratch {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "novamesh-libvirt-"));
  const nodeFile = path.join(dir, "node.xml");
  fs.writeFileSync(nodeFile, NODE_XML);
  return { dir, nodeUri: `test://${nodeFile}`, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
