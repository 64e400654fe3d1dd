/**
 * Runs the README's grpcurl examples with a generic reflection client (for
 * machines without grpcurl): every type comes from the server's reflection,
 * nothing from this repository's generated code.
 *
 *   NOVAMESH_ADMIN_TOKEN=... npx tsx scripts/readme-examples.ts [address]
 *
 * grpcurl's connection flags are honoured as written: -plaintext, -insecure,
 * -cacert, -cert, -key, -servername, -authority (files relative to the
 * current directory). A line `export NAME=$(grpcurl … | jq -r 'FILTER')`
 * runs the call and keeps what FILTER picks from its answer as $NAME, which
 * later lines' request bodies use ("$NAME" as a JSON string, written
 * `"'$NAME'"` in the shell line). FILTER is a pipeline of paths
 * (`.servers[0].addresses`, `.securityGroups[]`) and `select(.name == "x")`;
 * field names as grpcurl prints them (lowerCamelCase).
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { GrpcReflection } from "grpc-js-reflection-client";
import { clientCredentials, type ClientTls } from "../agent/tls.js";

export interface Example {
  readonly line: string;
  /** How the line connects: its -plaintext, -insecure, -cacert, -cert, -key, -servername and -authority. */
  readonly tls: ClientTls;
  readonly auth: boolean;
  readonly body: Record<string, unknown> | null;
  readonly target: string;
  /** `export NAME=$(grpcurl … | jq -r 'FILTER')`: the variable and the filter. */
  readonly exportAs?: { readonly name: string; readonly filter: string };
}

/** The outcome of each example: services listed, symbols described, call responses by method. */
export interface ExampleResults {
  readonly services: string[];
  readonly described: string[];
  readonly responses: Map<string, unknown>;
  /** Every call's response, in the README's order, by method (a method called twice has two). */
  readonly calls: { readonly method: string; readonly response: unknown }[];
  /** Streaming calls that stayed open (no error) for half a second. */
  readonly streamed: string[];
  /** The variables `export NAME=$(grpcurl … | jq …)` lines set. */
  readonly exported: Map<string, string>;
  /** Create calls answered ALREADY_EXISTS (what an earlier run made): shown, and the run goes on. */
  readonly alreadyThere: string[];
}

const README = fileURLToPath(new URL("../README.md", import.meta.url));
const ADDRESS = "127.0.0.1:8774";

/** A shell line's words: single quotes keep everything, double quotes keep all but `$VAR` (left as written). */
function words(line: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:'([^']*)'|"([^"]*)"|([^\s'"]+))/gy;
  let cur: string | null = null;
  let last = 0;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    const piece = m[1] ?? m[2] ?? m[3] ?? "";
    const spaced = m.index === 0 || /^\s/.test(m[0]);
    if (cur !== null && spaced) {
      out.push(cur);
      cur = null;
    }
    cur = (cur ?? "") + piece;
    last = re.lastIndex;
  }
  if (cur !== null) out.push(cur);
  if (line.slice(last).trim()) throw new Error("unbalanced quotes");
  return out;
}

/** One grpcurl line, parsed: flags, the address (it must be the README's), then the target. */
export function parseGrpcurl(line: string): Example {
  const w = words(line);
  if (w.shift() !== "grpcurl") throw new Error("not a grpcurl line");
  const tls: { -readonly [K in keyof ClientTls]: ClientTls[K] } = {};
  let auth = false;
  let body: Record<string, unknown> | null = null;
  for (;;) {
    const flag = w[0];
    if (flag === undefined || !flag.startsWith("-")) break;
    w.shift();
    const value = () => {
      const v = w.shift();
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "-plaintext": tls.plaintext = true; break;
      case "-insecure": tls.insecure = true; break;
      case "-cacert": tls.ca = value(); break;
      case "-cert": tls.cert = value(); break;
      case "-key": tls.key = value(); break;
      case "-servername": tls.serverName = value(); break;
      case "-authority": tls.authority = value(); break;
      case "-H": {
        const h = value();
        if (h !== "authorization: Bearer $TOKEN") throw new Error(`header ${JSON.stringify(h)} not understood`);
        auth = true;
        break;
      }
      case "-d": body = JSON.parse(value()) as Record<string, unknown>; break;
      default: throw new Error(`flag ${flag} not understood`);
    }
  }
  if (tls.plaintext && (tls.insecure || tls.ca || tls.cert || tls.key)) throw new Error("-plaintext with TLS flags");
  if (w.shift() !== ADDRESS) throw new Error(`the address must be ${ADDRESS}`);
  const target = w.join(" ");
  if (!target || w.length > 2) throw new Error("no target, or more than one");
  return { line, tls, auth, body, target };
}

const EXPORT_WAIT_MS = 30_000;
const EXPORT = /^export ([A-Z_][A-Z0-9_]*)=\$\((grpcurl .*) \| jq -r '([^']*)'\)$/;

/**
 * `v` with protobuf maps as JSON objects, as grpcurl prints them: the
 * reflection client's descriptors give a map as its entries, `[{key, value}]`.
 */
function asMaps(v: unknown): unknown {
  if (Array.isArray(v)) {
    const entries = v.length > 0 && v.every((e) => e && typeof e === "object" && !Array.isArray(e) && Object.keys(e).sort().join() === "key,value");
    return entries ? Object.fromEntries(v.map((e: { key: string; value: unknown }) => [e.key, asMaps(e.value)])) : v.map(asMaps);
  }
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asMaps(x)]));
  return v;
}

/** Values of a jq filter (the subset the README uses) on `input`, whose keys may be snake_case where jq names lowerCamelCase. */
export function jqValues(filter: string, input: unknown): unknown[] {
  const field = (v: unknown, name: string): unknown => {
    if (v === null || typeof v !== "object") return null;
    const o = v as Record<string, unknown>;
    const snake = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    return name in o ? o[name] : snake in o ? o[snake] : null;
  };
  const path = (expr: string, v: unknown): unknown[] => {
    if (!expr.startsWith(".")) throw new Error(`jq: "${expr}" not understood`);
    let vals = [v];
    for (const m of expr.matchAll(/\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d*)\]|(.)/g)) {
      if (m[3] !== undefined && m[3] !== ".") throw new Error(`jq: "${expr}" not understood`);
      if (m[1] !== undefined) vals = vals.map((x) => field(x, m[1]!));
      else if (m[2] === "") vals = vals.flatMap((x) => (Array.isArray(x) ? x : []));
      else if (m[2] !== undefined) vals = vals.map((x) => (Array.isArray(x) ? (x[Number(m[2])] ?? null) : null));
    }
    return vals;
  };
  let vals = [asMaps(input)];
  for (const stage of filter.split("|").map((x) => x.trim())) {
    const sel = /^select\((\.[^ ]*) == "([^"]*)"\)$/.exec(stage);
    vals = sel ? vals.filter((v) => path(sel[1]!, v)[0] === sel[2]) : vals.flatMap((v) => path(stage, v));
  }
  return vals;
}

/** The grpcurl commands of the README, parsed; an unparseable one throws. */
export async function readmeExamples(): Promise<Example[]> {
  const out: Example[] = [];
  for (const line of (await readFile(README, "utf8")).split("\n")) {
    const exported = EXPORT.exec(line);
    if (!line.startsWith("grpcurl ") && !exported) continue;
    try {
      out.push(exported ? { ...parseGrpcurl(exported[2]!), line, exportAs: { name: exported[1]!, filter: exported[3]! } } : parseGrpcurl(line));
    } catch (err) {
      throw new Error(`README example not understood (${(err as Error).message}): ${line}`);
    }
  }
  return out;
}

/** Channel credentials and options for an example's flags, its files taken relative to `cwd`. */
function connection(ex: Example, cwd: string) {
  const at = (f: string | undefined) => (f === undefined ? undefined : resolve(cwd, f));
  const flags = { plaintext: "-plaintext", ca: "-cacert", cert: "-cert", key: "-key" };
  return clientCredentials({ ...ex.tls, ca: at(ex.tls.ca), cert: at(ex.tls.cert), key: at(ex.tls.key) }, flags);
}

/**
 * Runs every example against `address` with `token` standing for $TOKEN; a
 * failing call throws. Files the lines name (-cacert …) are relative to `cwd`.
 */
/** What mapsAsEntries reads of a protobufjs message type (the reflection client's loader). */
interface MessageType {
  readonly fieldsArray: readonly { readonly name: string; readonly map: boolean; readonly repeated: boolean; resolve(): { readonly resolvedType: object | null } }[];
}

/**
 * A JSON object given for a map field, as the repeated `…Entry` messages
 * the reflection client's service loader expects (grpcurl takes the
 * object as it is).
 */
function mapsAsEntries(type: MessageType, body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body };
  for (const field of type.fieldsArray) {
    const value = body[field.name];
    if (value === undefined || value === null || typeof value !== "object" || Array.isArray(value)) continue;
    if (field.map) {
      out[field.name] = Object.entries(value as Record<string, unknown>).map(([key, v]) => ({ key, value: v }));
      continue;
    }
    const sub = field.resolve().resolvedType;
    if (!field.repeated && sub && "fieldsArray" in sub) out[field.name] = mapsAsEntries(sub as MessageType, value as Record<string, unknown>);
  }
  return out;
}

export async function runExamples(examples: readonly Example[], address: string, token: string, cwd = process.cwd()): Promise<ExampleResults> {
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${token}`);
  const results: ExampleResults = { services: [], described: [], responses: new Map(), calls: [], streamed: [], exported: new Map(), alreadyThere: [] };
  /** The body with every $NAME in its strings (as the shell splices '…'$NAME'…') replaced by what an earlier export set. */
  const substitute = (v: unknown): unknown => {
    if (typeof v === "string") {
      return v.replace(/\$([A-Z_][A-Z0-9_]*)/g, (ref, name: string) => {
        const value = results.exported.get(name);
        if (value === undefined) throw new Error(`${ref} is not set by an earlier example`);
        return value;
      });
    }
    if (Array.isArray(v)) return v.map(substitute);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x)]));
    return v;
  };
  for (const ex of examples) {
    const { credentials, channelOptions } = connection(ex, cwd);
    const reflection = new GrpcReflection(address, credentials, channelOptions, "v1");
    if (ex.target === "list") {
      results.services.push(...(await reflection.listServices()).map((s) => (typeof s === "string" ? s : (s as { name: string }).name)));
      continue;
    }
    if (ex.target.startsWith("describe ")) {
      const symbol = ex.target.slice("describe ".length);
      const root = (await reflection.getDescriptorBySymbol(symbol)).getProtobufJsRoot();
      if (!root.lookup(symbol)) throw new Error(`${ex.line}: ${symbol} not described`);
      results.described.push(symbol);
      continue;
    }
    const [service, method] = ex.target.split("/") as [string, string];
    const descriptor = await reflection.getDescriptorBySymbol(service);
    const pkg = descriptor.getPackageObject({ keepCase: true, longs: String, enums: String, defaults: true });
    const rpc = descriptor.getProtobufJsRoot().lookupService(service).methods[method]!.resolve() as unknown as { resolvedRequestType: MessageType };
    let node: unknown = pkg;
    for (const part of service.split(".")) node = (node as Record<string, unknown>)[part];
    const client = new (node as grpc.ServiceClientConstructor)(address, credentials, channelOptions);
    const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!.bind(client);
    const callMd = ex.auth ? md : new grpc.Metadata();
    try {
      if (method.startsWith("Watch")) {
        // A watch stays open: what it sent in its first half second is its answer.
        const stream = fn(ex.body ?? {}, callMd) as grpc.ClientReadableStream<unknown>;
        const events: unknown[] = [];
        stream.on("data", (e: unknown) => events.push(e));
        const failed = new Promise<unknown>((resolve) => stream.on("error", resolve));
        const outcome = await Promise.race([failed, new Promise((r) => setTimeout(() => r("open"), 500))]);
        stream.cancel();
        if (outcome !== "open") throw new Error(`${ex.line}: ${String(outcome)}`);
        results.streamed.push(method);
        results.responses.set(method, { events });
      } else {
        const call = () =>
          new Promise((resolve, reject) =>
            fn(mapsAsEntries(rpc.resolvedRequestType, substitute(ex.body ?? {}) as Record<string, unknown>), callMd, (e: grpc.ServiceError | null, r: unknown) => {
              if (!e) return resolve(r);
              // Made by an earlier run of these examples: the README says so of its Create lines.
              if (e.code === grpc.status.ALREADY_EXISTS && method.startsWith("Create") && !ex.exportAs) return resolve({ alreadyExists: e.details });
              reject(new Error(`${ex.line}: ${e.message}`));
            }),
          );
        let res = await call();
        if (res && typeof res === "object" && "alreadyExists" in res) results.alreadyThere.push(method);
        if (ex.exportAs) {
          // What the filter picks may come a moment later (a server gets its address once placed): asked again for up to 30 s.
          const deadline = Date.now() + EXPORT_WAIT_MS;
          let picked = jqValues(ex.exportAs.filter, res).filter((v) => v !== null);
          while (picked.length === 0 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 500));
            res = await call();
            picked = jqValues(ex.exportAs.filter, res).filter((v) => v !== null);
          }
          if (picked.length === 0) throw new Error(`${ex.line}: the filter picked nothing in ${EXPORT_WAIT_MS / 1000} s from ${JSON.stringify(res).slice(0, 300)}`);
          results.exported.set(ex.exportAs.name, picked.map(String).join("\n"));
        }
        results.responses.set(method, res);
        results.calls.push({ method, response: res });
      }
    } finally {
      client.close();
    }
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const address = process.argv[2] ?? "127.0.0.1:8774";
  const token = process.env.NOVAMESH_ADMIN_TOKEN ?? process.env.TOKEN ?? "";
  const examples = await readmeExamples();
  const r = await runExamples(examples, address, token);
  console.log(`${examples.length} README examples ran against ${address}`);
  console.log(`  list: ${r.services.length} services; described: ${r.described.join(", ")}; streamed: ${r.streamed.join(", ")}`);
  for (const [method, res] of r.responses) console.log(`  ${method}: ${JSON.stringify(res).slice(0, 160)}`);
  for (const [name, value] of r.exported) console.log(`  $${name}=${value}`);
  if (r.alreadyThere.length) console.log(`  already there from an earlier run (ALREADY_EXISTS): ${r.alreadyThere.join(", ")}`);
  process.exit(0);
}
