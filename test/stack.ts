/**
 * The stack most integration tests run on: a controller on its own database
 * and stream, admin and member clients, registered images, a temp dir and
 * fake agents, set up in one suite's before() and taken down in its after().
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { after, before } from "node:test";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import type { Server } from "../gen/novamesh/compute/v1/server.js";
import type { Controller } from "../controller/controller.js";
import type { ControllerConfig } from "../controller/config.js";
import type { Logger } from "pino";
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { Hosts, REPO, freePort, hostNames, tempDirPath, type AgentSpec } from "./agents.js";
import { join } from "node:path";
import { TestEnv, clients, eventually, makeCerts, servicesUp, settled as settledIn, withOnlyHost, type Clients } from "./harness.js";

export interface StackOptions<P extends string> {
  /** Names the temp dir (`novamesh-test-<name>-…`). */
  name: string;
  /** Controller settings over the test environment's. */
  controller?: Partial<ControllerConfig>;
  /** Where the controller logs (default: see TestEnv.startController). */
  controllerLog?: Logger;
  /**
   * Serve TLS with certificates made by scripts/certs.sh into
   * `<dir>/.state/tls` (the clients and agents trust its CA). Default: plaintext.
   */
  tls?: boolean;
  /** Listen on a port chosen up front, so that a controller started again is where the agents look. */
  fixedPort?: boolean;
  /** Projects that get member clients, each under its own name. Default: alice. */
  members?: readonly P[];
  /** Public images registered by name; the first is `imageId`. Default: one "cirros". */
  images?: readonly string[];
  /** Agent processes, given the environment's id (host names carry it), the environment and the dir. Default: none. */
  agents?: (at: { id: string; env: TestEnv; dir: string }) => AgentSpec[];
  /** Set-up the agents need, run once the controller, clients, images and dir are there. */
  beforeAgents?: () => Promise<void>;
  /** The flavor `boot` uses when not told. Default: m1.small. */
  flavor?: string;
  /** Remove the temp dir at the end. Default: only when there are no agents (whose logs it keeps). */
  removeDir?: boolean;
}

export type Member = Clients & { token: string };

export interface Stack {
  readonly env: TestEnv;
  /** The controller that runs now. */
  readonly ctl: Controller;
  readonly admin: Clients;
  /** The first image's id, and every image's in `images` order (chosen up front). */
  readonly imageId: string;
  readonly imageIds: readonly string[];
  readonly dir: string;
  /** Every compute host's name, in `agents` order. */
  readonly hosts: readonly string[];
  readonly agents: Hosts;
  stopController(): Promise<void>;
  /** Starts a controller with the stack's settings and `over`; it becomes `ctl`. */
  startController(over?: Partial<ControllerConfig>): Promise<Controller>;
  /**
   * Waits until the server shows `status` with no task running (seen by the
   * first member, else admin), and returns it as an admin sees it (members
   * see no host names).
   */
  settled(id: string, status: ServerStatus, timeoutMs?: number): Promise<Server>;
  /** Creates a server as the first member (else admin) and waits until it is ACTIVE. */
  boot(name: string, flavorId?: string, imageId?: string): Promise<Server>;
  /** Boots (with boot's defaults) with every other host disabled, and checks it landed on `host`. */
  bootOn(host: string, name: string): Promise<Server>;
}

/**
 * A clients object that exists before the hook that makes the real one
 * runs: each property read goes to the real one, so suites can take
 * `admin` and members out of the stack at definition time.
 */
function late<T extends object>(what: string, get: () => T | undefined): T {
  const target = () => {
    const v = get();
    if (v === undefined) throw new Error(`${what} is not set up (used outside the suite's tests, or not asked for)`);
    return v;
  };
  return new Proxy({} as T, {
    get: (_t, prop) => Reflect.get(target(), prop),
    has: (_t, prop) => Reflect.has(target(), prop),
  });
}

/**
 * Registers the suite's before() and after() hooks (call it inside
 * describe()) and returns the stack they set up and take down.
 */
export function stack<P extends string = "alice">(o: StackOptions<P>): Stack & { readonly [K in P]: Member } {
  const env = new TestEnv();
  const dir = tempDirPath(o.name);
  const specs = o.agents?.({ id: env.id, env, dir }) ?? [];
  const hosts = specs.flatMap(hostNames);
  const imageNames = o.images ?? ["cirros"];
  const imageIds = imageNames.map(() => randomUUID());
  const projects: readonly string[] = o.members ?? ["alice"];
  const members = new Map<string, Member>();
  let ctl: Controller | undefined;
  let admin: Clients | undefined;
  let port: number | undefined;

  const config = (over: Partial<ControllerConfig> = {}) => ({ ...(port ? { listen: `127.0.0.1:${port}` } : {}), ...o.controller, ...over });
  const running = () => {
    if (!ctl) throw new Error("no controller is running");
    return ctl;
  };
  const agents = new Hosts(env, () => (port ? `127.0.0.1:${port}` : env.address(running())), dir);
  const user = () => {
    const c = projects.length ? members.get(projects[0]!) : admin;
    if (!c) throw new Error("the stack is not set up (used outside the suite's tests?)");
    return c;
  };
  /** Waits as the first member (else admin), and returns the server as an admin sees it: with its host's name. */
  const settled = async (id: string, status: ServerStatus, timeoutMs?: number) => {
    await settledIn(user(), id, status, timeoutMs);
    return (await admin!.servers.getServer({ id })).server!;
  };
  const boot = async (name: string, flavorId = o.flavor ?? "m1.small", imageId = imageIds[0]) => {
    const s = (await user().servers.createServer({ name, flavorId, imageId })).server!;
    return settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
  };
  const bootOn = (host: string, name: string) =>
    withOnlyHost(admin!, host, async () => {
      const active = await boot(name);
      assert.equal(active.host, host);
      return active;
    });

  before(async () => {
    if (o.fixedPort) port = await freePort();
    if (o.tls) env.tls = await makeCerts(join(dir, ".state", "tls"));
    ctl = await env.startController(config(), o.controllerLog);
    admin = env.admin(ctl);
    for (const p of projects) members.set(p, await env.as(ctl, p));
    for (const [i, name] of imageNames.entries()) await env.image(ctl, name, imageIds[i]);
    await mkdir(dir, { recursive: true });
    await o.beforeAgents?.();
    for (const spec of specs) agents.start(spec);
    if (hosts.length) await servicesUp(admin, hosts.length);
    for (const spec of specs.filter((s) => s.disabled)) {
      for (const host of hostNames(spec)) await admin.hosts.disableService({ host, reason: spec.disabled! });
    }
  });
  after(async () => {
    try {
      await agents.stopAll();
    } finally {
      await env.cleanup();
    }
    if (o.removeDir ?? specs.length === 0) await rm(dir, { recursive: true, force: true });
  });

  const st: Stack = {
    env,
    get ctl() {
      return running();
    },
    admin: late("admin", () => admin),
    imageId: imageIds[0] ?? "",
    imageIds,
    dir,
    hosts,
    agents,
    async stopController() {
      await env.stopController(running());
      ctl = undefined;
    },
    async startController(over = {}) {
      ctl = await env.startController(config(over), o.controllerLog);
      return ctl;
    },
    settled,
    boot,
    bootOn,
  };
  for (const p of projects) Object.defineProperty(st, p, { value: late(p, () => members.get(p)), enumerable: true });
  return st as Stack & { readonly [K in P]: Member };
}

/** A test environment whose after() hook drops it (call it inside describe()). */
export function testEnv(): TestEnv {
  const env = new TestEnv();
  after(() => env.cleanup());
  return env;
}

/**
 * A second controller in its own process on the same database, stream and
 * subjects as `env`'s, logging to `<dir>/controller-b.log`; its clients
 * answer once it does. Stop it with stopAgent(process).
 */
export async function secondController(env: TestEnv, dir: string, over: Partial<ControllerConfig> = {}, extraArgs: readonly string[] = []): Promise<{ process: ChildProcess; clients: Clients; address: string }> {
  const c = env.config(over);
  const port = await freePort();
  const args = [
    "--listen", `127.0.0.1:${port}`, "--database-url", c.databaseUrl!, "--nats", c.natsUrl!, "--ops-stream", c.opsStream!,
    "--ops-subject-prefix", c.opsSubjectPrefix!, "--image-bucket", c.imageBucket!, "--admin-token", c.adminToken!,
    "--report-interval", String(c.reportIntervalSeconds), "--service-down-time", String(c.serviceDownTimeSeconds),
    "--plaintext", ...extraArgs,
  ];
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "controller/main.ts"), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(join(dir, "controller-b.log"));
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const b = clients(`127.0.0.1:${port}`, env.adminToken);
  await eventually(() => b.flavors.listFlavors({}).then(() => true, () => false), { what: "the second controller answering", timeoutMs: 30_000 });
  return { process: child, clients: b, address: `127.0.0.1:${port}` };
}
