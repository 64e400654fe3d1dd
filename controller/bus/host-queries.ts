/**
 * Questions the controller asks a host's agent directly, answered at once
 * (NATS request and reply on the host's query subject): what only the host
 * knows and nothing needs to remember, such as the end of a console log.
 * Unlike ops these are never queued: a host that is not there fails the
 * call at once, one that does not answer in time fails it after the timeout.
 */
import { status } from "@grpc/grpc-js";
import { ErrorCode, type NatsConnection, type NatsError } from "nats";
import { AgentQuery, AgentQueryReply } from "../../gen/novamesh/agent/v1/agent.js";
import { ApiError, failedPrecondition } from "../errors.js";
import { querySubject } from "./subjects.js";

/** Most bytes of console log a query returns (Nova's libvirt driver keeps 100 KiB). */
export const MAX_CONSOLE_BYTES = 100 * 1024;

function unreachable(host: string, why: string, cause?: unknown): ApiError {
  return new ApiError(status.UNAVAILABLE, `host ${host}: ${why}`, { reason: "HOST_UNREACHABLE", metadata: { host }, cause });
}

export class HostQueries {
  constructor(
    private readonly nats: NatsConnection,
    private readonly subjectPrefix: string,
    /** How long an agent has to answer. */
    private readonly timeoutMs = 10_000,
  ) {}

  /** The last `lines` lines (0: all) of at most {@link MAX_CONSOLE_BYTES} of a server's console on `host`. */
  async consoleOutput(host: string, serverId: string, lines: number): Promise<string> {
    const reply = await this.ask(host, { query: { $case: "consoleOutput", consoleOutput: { serverId, lines, maxBytes: MAX_CONSOLE_BYTES } } });
    if (reply.result?.$case === "consoleOutput") return reply.result.consoleOutput.output;
    throw this.failure(host, serverId, reply);
  }

  private async ask(host: string, query: AgentQuery): Promise<AgentQueryReply> {
    let data: Uint8Array;
    try {
      const msg = await this.nats.request(querySubject(this.subjectPrefix, host), AgentQuery.encode(query).finish(), { timeout: this.timeoutMs });
      data = msg.data;
    } catch (err) {
      const code = (err as NatsError).code;
      if (code === ErrorCode.NoResponders) throw unreachable(host, "its agent is not connected", err);
      if (code === ErrorCode.Timeout) throw unreachable(host, `its agent did not answer within ${this.timeoutMs / 1000} s`, err);
      throw unreachable(host, `NATS: ${(err as Error).message}`, err);
    }
    try {
      return AgentQueryReply.decode(data);
    } catch (err) {
      throw unreachable(host, "its agent sent an answer that does not decode", err);
    }
  }

  private failure(host: string, serverId: string, reply: AgentQueryReply): ApiError {
    if (reply.result?.$case !== "error") return unreachable(host, "its agent answered another question");
    const { code, message } = reply.result.error;
    if (code === "NOT_FOUND") {
      return failedPrecondition(`host ${host} has no virtual machine for server ${serverId}`, "INSTANCE_NOT_ON_HOST", { host });
    }
    if (code === "NOT_SUPPORTED") return new ApiError(status.UNIMPLEMENTED, `host ${host}: ${message}`, { reason: "NOT_SUPPORTED", metadata: { host } });
    return unreachable(host, `${code}: ${message}`);
  }
}
