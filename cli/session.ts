/**
 * What every command shares: its connection, output options and clients
 * (`session`), and the shapes most commands take — call a method and print
 * a list (`listCommand`), one resource (`callCommand`), or nothing — with
 * `--wait` following the operation a call returns.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Command } from "commander";
import { OperationServiceClient } from "../gen/novamesh/compute/v1/operation.js";
import { connection, unary, type Connection, type ConnectionOptions } from "./connection.js";
import { UsageError, printList, printOne, type Cell, type Format, type OutputOptions, type Row } from "./output.js";
import { at, viewOf } from "./view.js";

export type Global = ConnectionOptions & { format: Format; column: string[] };

/** A generated client's class. */
export type ClientClass<T extends grpc.Client = grpc.Client> = new (address: string, credentials: grpc.ChannelCredentials, options?: object) => T;

export interface Session {
  readonly c: Connection;
  readonly output: OutputOptions;
  /** A client of the controller. */
  client<T extends grpc.Client>(C: ClientClass<T>): T;
}

/** A command's connection, output options and clients (the options of the command and of `novamesh` itself). */
export function session(cmd: Command): Session {
  const g = cmd.optsWithGlobals<Global>();
  const c = connection(g);
  return {
    c,
    output: { format: g.format, columns: g.column },
    client: (C) => new C(c.address, c.credentials, c.channelOptions),
  };
}

export const out = (text: string) => process.stdout.write(text);

/** Rejects when the user presses Ctrl-C, saying how to follow what goes on; `what` is the command to follow it with. */
export function interrupted(what: string): Promise<never> {
  return new Promise<never>((_, reject) =>
    process.once("SIGINT", () => reject(Object.assign(new Error(`stopped waiting; the operation goes on: ${what}`), { exitCode: 130 }))),
  );
}

/** An operation as the follower reads it. */
interface OperationView {
  readonly name: string;
  readonly state: string;
  readonly done: boolean;
  readonly progress_percent: number;
  readonly progress_message: string;
  readonly error?: { code: number; message: string } | null;
}

/**
 * Follows operation `name` until it is done, its state and progress on
 * stderr as they change; resolves its view and whether it failed. One that
 * failed sets the exit code 1 and says why on stderr.
 */
export async function followOperation(s: Session, name: string): Promise<{ operation: Row; failed: boolean }> {
  const ops = s.client(OperationServiceClient);
  const stop = interrupted(`novamesh operation wait ${name}`);
  let last = "";
  for (;;) {
    const res = await Promise.race([unary(s.c, ops, "waitOperation", { name, timeoutSeconds: 10 }), stop]);
    const view = viewOf(ops, "waitOperation", res).operation as unknown as OperationView & Row;
    const progress = view.progress_percent && !view.done ? ` ${view.progress_percent}%` : "";
    const now = `${view.state}${progress}${view.progress_message ? ` ${view.progress_message}` : ""}`;
    if (now !== last) process.stderr.write(`${name}: ${now}\n`);
    last = now;
    if (!view.done) continue;
    // error: unset (absent) while the operation succeeded.
    const failed = !!view.error && view.error.code !== 0;
    if (failed) {
      process.stderr.write(`  error: ${view.error!.message}\n`);
      process.exitCode = 1;
    }
    return { operation: view, failed };
  }
}

/** The positionals among an action's arguments (a variadic one spread out); the last two are its options and the command. */
const positionals = (all: unknown[]) => (all.slice(0, -2) as (string | string[])[]).flat();

/** The arguments a command's action gets: its positionals, then its options. */
type Parse<O> = (args: string[], o: O) => object;

export interface CallSpec<O = Record<string, unknown>> {
  readonly client: ClientClass;
  /** The client's method (lowerCamel). */
  readonly method: string;
  /** The request, from the positionals and options. */
  readonly request: Parse<O>;
  /** The response field printed as one resource; none: nothing is printed. */
  readonly field?: string;
  /** Adds the command's options. */
  readonly options?: (cmd: Command) => Command;
  /** Offer --wait: follow the operation in the response's `operation`, then print `field` again with `refresh`. */
  readonly wait?: { readonly refresh?: (s: Session, view: Row) => Promise<Row> };
}

/** A command that makes one call and prints one resource of its answer (or nothing). */
export function callCommand<O extends object>(parent: Command, usage: string, description: string, spec: CallSpec<O>): Command {
  let cmd = parent.command(usage).description(description);
  if (spec.wait) cmd = cmd.option("--wait", "follow its operation until it is done, showing its progress");
  if (spec.options) cmd = spec.options(cmd);
  return cmd.action(async (...all: unknown[]) => {
    const self = all.at(-1) as Command;
    const o = all.at(-2) as O & { wait?: boolean };
    const s = session(self);
    const client = s.client(spec.client);
    const res = await unary(s.c, client, spec.method, spec.request(positionals(all), o));
    const view = viewOf(client, spec.method, res);
    let shown = spec.field ? (view[spec.field] as Row | undefined) : undefined;
    const operation = view.operation as Row | undefined;
    if (o.wait && operation?.name) {
      const { failed } = await followOperation(s, String(operation.name));
      // A failed operation may have taken its resource with it: what the call returned is shown.
      if (shown && spec.wait?.refresh && !failed) shown = await spec.wait.refresh(s, shown);
    }
    if (shown) out(printOne(shown, s.output));
  });
}

export interface ListSpec<O = Record<string, unknown>> {
  readonly client: ClientClass;
  readonly method: string;
  readonly request?: Parse<O>;
  /** The response's repeated field. */
  readonly field: string;
  /** The columns of the table when -c names none; a dotted path reads a nested field ("flavor.name"). */
  readonly columns: readonly string[];
  readonly options?: (cmd: Command) => Command;
}

/** A command that makes one call and prints a list of its answer. */
export function listCommand<O extends object>(parent: Command, usage: string, description: string, spec: ListSpec<O>): Command {
  let cmd = parent.command(usage).description(description);
  if (spec.options) cmd = spec.options(cmd);
  return cmd.action(async (...all: unknown[]) => {
    const self = all.at(-1) as Command;
    const s = session(self);
    const client = s.client(spec.client);
    const request = spec.request?.(positionals(all), all.at(-2) as O) ?? {};
    // Every page: a list that pages is followed to its end.
    const items: Row[] = [];
    let pageToken = "";
    do {
      const view = viewOf(client, spec.method, await unary(s.c, client, spec.method, pageToken ? { ...request, pageToken } : request));
      items.push(...((view[spec.field] ?? []) as Row[]));
      pageToken = typeof view.next_page_token === "string" ? view.next_page_token : "";
    } while (pageToken);
    out(printList(items.map((item) => withPaths(item, spec.columns)), s.output, spec.columns));
  });
}

/** `row` with the dotted columns filled in from its nested fields. */
function withPaths(row: Row, columns: readonly string[]): Row {
  const extra = Object.fromEntries(columns.filter((c) => c.includes(".")).map((c) => [c, (at(row, c) ?? "") as Cell]));
  return { ...row, ...extra };
}

/** A repeatable option's parser: collects each value given. */
export const many = (v: string, acc: string[]) => [...acc, v];

/** `key=value` options as a map; one without "=" is a usage mistake naming the option. */
export function pairs(option: string, items: readonly string[]): Record<string, string> {
  return Object.fromEntries(
    items.map((item) => {
      const i = item.indexOf("=");
      if (i <= 0) throw new UsageError(`${option} ${item}: give key=value`);
      return [item.slice(0, i), item.slice(i + 1)];
    }),
  );
}

/** An integer option of `min` to `max` (default: what an int32 field holds); anything else is a usage mistake naming the option. */
export function integer(option: string, v: string | undefined, min = 1, max = 2 ** 31 - 1): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || n < min || n > max) throw new UsageError(`${option} must be a whole number from ${min} to ${max}, not "${v}"`);
  return n;
}

/**
 * An enum value given by its short name ("anti-affinity" or
 * "ANTI_AFFINITY" for SERVER_GROUP_POLICY_ANTI_AFFINITY); anything else is a
 * usage mistake listing the choices.
 */
export function enumArg(e: Record<string, string | number>, prefix: string, option: string, v: string): number {
  const value = e[`${prefix}${v.toUpperCase().replaceAll("-", "_")}`];
  if (typeof value === "number" && value !== 0) return value;
  const choices = Object.keys(e).filter((k) => typeof e[k] === "number" && e[k] !== 0 && k.startsWith(prefix)).map((k) => k.slice(prefix.length).toLowerCase().replaceAll("_", "-"));
  throw new UsageError(`${option} ${v}: choose one of ${choices.join(", ")}`);
}

/** `resource=N` options as limits; N is an integer of -1 (no limit) or more. */
export function limits(option: string, items: readonly string[]): Record<string, number> {
  return Object.fromEntries(
    Object.entries(pairs(option, items)).map(([k, v]) => {
      const n = Number(v);
      if (v === "" || !Number.isInteger(n)) throw new UsageError(`${option} ${k}=${v}: the limit must be an integer (-1: no limit)`);
      return [k, n];
    }),
  );
}
