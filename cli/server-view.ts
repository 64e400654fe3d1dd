/**
 * How a server is shown (`serverRow`, `show`) and followed: `waitFor`
 * polls it, its status, task and progress on stderr as they change, until
 * the task is done.
 */
import { ServerServiceClient, ServerStatus, TaskState, type GetServerResponse, type Server } from "../gen/novamesh/compute/v1/server.js";
import { OperationServiceClient, type GetOperationResponse } from "../gen/novamesh/compute/v1/operation.js";
import { unary } from "./connection.js";
import { printOne, type OutputOptions, type Row } from "./output.js";
import { interrupted, out, type Session } from "./session.js";

const name = <E extends Record<string, string | number>>(e: E, prefix: string, v: number) => String((e as Record<number, string>)[v] ?? v).replace(prefix, "");

/** A server as the CLI shows it. */
export function serverRow(s: Server): Row {
  return {
    id: s.id,
    name: s.name,
    status: name(ServerStatus, "SERVER_STATUS_", s.status),
    task: s.taskState ? name(TaskState, "TASK_STATE_", s.taskState) : "",
    flavor: s.flavor?.name ?? "",
    image: s.imageId,
    host: s.host || s.hostId,
    availability_zone: s.availabilityZone,
    addresses: s.interfaces.flatMap((i) => i.ipAddresses),
    key_name: s.keyName,
    description: s.description,
    metadata: s.metadata,
    tags: s.tags,
    locked: s.locked,
    fault: s.fault ? `${s.fault.code}: ${s.fault.message}` : "",
    created: s.createTime ? s.createTime.toISOString() : "",
  };
}
export const SERVER_LIST_COLUMNS = ["id", "name", "status", "task", "flavor", "addresses"];

/**
 * Follows a server until `done`: its status and task on stderr as they
 * change, with the progress of `operation` (the one the call returned)
 * while it has any; Ctrl-C stops following, not the operation.
 */
export async function waitFor(s: Session, id: string, done: (x: Server) => boolean, operation?: string): Promise<Server> {
  const servers = s.client(ServerServiceClient);
  const ops = operation ? s.client(OperationServiceClient) : undefined;
  const stop = interrupted(operation ? `novamesh operation wait ${operation}` : `novamesh server show ${id}`);
  let last = "";
  for (;;) {
    const [got, op] = await Promise.race([
      Promise.all([unary<GetServerResponse>(s.c, servers, "getServer", { id }), ops ? unary<GetOperationResponse>(s.c, ops, "getOperation", { name: operation }) : undefined]),
      stop,
    ]);
    const server = got.server!;
    const row = serverRow(server);
    const progress = op?.operation && !op.operation.done && op.operation.progressPercent > 0 ? ` ${op.operation.progressPercent}%` : "";
    const now = `${row.status}${row.task ? ` (${row.task}${progress})` : ""}`;
    if (now !== last) process.stderr.write(`${id}: ${now}\n`);
    last = now;
    if (done(server)) return server;
    await Promise.race([new Promise((r) => setTimeout(r, 500)), stop]);
  }
}

/** Its task is done and it is no longer being built. */
export const settledServer = (s: Server) => !s.taskState && s.status !== ServerStatus.SERVER_STATUS_BUILD;

/** Prints a server; one in ERROR fails the command, its fault's details on stderr. */
export function show(s: Server, o: OutputOptions): void {
  out(printOne(serverRow(s), o));
  if (s.status !== ServerStatus.SERVER_STATUS_ERROR) return;
  for (const [k, v] of Object.entries(s.fault?.details ?? {})) process.stderr.write(`  ${k}: ${v}\n`);
  process.exitCode = 1;
}
