/**
 * One `AgentService/Connect` stream: sends Hello, waits for HelloAck, then
 * carries reports and results up and OpResultAcks down until the stream
 * ends. The Agent opens a new session after each loss. Op outcomes and
 * progress are encoded here, as they leave.
 */
import { Metadata, status as GrpcStatus, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type {
  AgentServiceClient,
  ConnectRequest,
  ConnectResponse,
  Hello,
  HelloAck,
  NatsCredential,
  NetworkUpdate,
} from "../../gen/novamesh/agent/v1/agent.js";
import type { OpOutcome } from "../ops/outcome.js";
import type { OpProgressEvent } from "../ops/progress.js";
import { opProgressToProto, opResultToProto } from "../proto-convert.js";

/** Options of {@link ControllerSession.open}. */
export interface ControllerSessionOptions {
  /** The gRPC client. */
  readonly client: AgentServiceClient;
  /** Agent token ("" sends no authorization header). */
  readonly token: string;
  /** The Hello to send. */
  readonly hello: Hello;
  /** Fail if HelloAck does not come within this many ms. */
  readonly helloTimeoutMs: number;
  /** Called for every OpResultAck. */
  readonly onOpResultAck: (opId: string) => void;
  /** Called with each renewed NATS credential. */
  readonly onNatsCredential?: (c: NatsCredential) => void;
  /** The host's network as the controller has it (after HelloAck, and after each change). */
  readonly onNetworkUpdate?: (u: NetworkUpdate) => void;
  /** Logger. */
  readonly logger: Logger;
}

/** Why a session ended: undefined if the controller closed it with OK. */
export type SessionEnd = ServiceError | Error | undefined;

/** See the module comment. */
export class ControllerSession {
  /** Resolves when the stream has ended, with the reason. */
  readonly ended: Promise<SessionEnd>;
  private isOpen = true;

  private constructor(
    private readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>,
    /** The controller's answer to Hello. */
    readonly helloAck: HelloAck,
    ended: Promise<SessionEnd>,
  ) {
    this.ended = ended.finally(() => {
      this.isOpen = false;
    });
  }

  /** Opens the stream and says Hello; resolves once HelloAck arrives. */
  static open(options: ControllerSessionOptions): Promise<ControllerSession> {
    const metadata = new Metadata();
    if (options.token) metadata.set("authorization", `Bearer ${options.token}`);
    const call = options.client.connect(metadata);
    let resolveEnd!: (end: SessionEnd) => void;
    const ended = new Promise<SessionEnd>((resolve) => (resolveEnd = resolve));
    call.on("error", (err: ServiceError) => resolveEnd(err));
    call.on("status", (s) => resolveEnd(s.code === GrpcStatus.OK ? undefined : new Error(`stream ended: ${s.details}`)));
    call.on("end", () => resolveEnd(undefined));

    return new Promise<ControllerSession>((resolve, reject) => {
      let session: ControllerSession | undefined;
      const timer = setTimeout(() => {
        reject(new Error(`no HelloAck within ${options.helloTimeoutMs} ms`));
        call.cancel();
      }, options.helloTimeoutMs);
      void ended.then((end) => {
        clearTimeout(timer);
        if (!session) reject(end ?? new Error("the controller ended the stream before HelloAck"));
      });
      call.on("data", (msg: ConnectResponse) => {
        const body = msg.body;
        if (!session) {
          if (body?.$case !== "helloAck") {
            reject(new Error(`expected HelloAck as the first message, got ${body?.$case ?? "an empty message"}`));
            call.cancel();
            return;
          }
          clearTimeout(timer);
          session = new ControllerSession(call, body.helloAck, ended);
          resolve(session);
        } else if (body?.$case === "opResultAck") {
          options.onOpResultAck(body.opResultAck.opId);
        } else if (body?.$case === "natsCredential") {
          options.onNatsCredential?.(body.natsCredential);
        } else if (body?.$case === "networkUpdate") {
          options.onNetworkUpdate?.(body.networkUpdate);
        } else {
          options.logger.warn({ message: body?.$case }, "unexpected message from the controller; ignored");
        }
      });
      call.write({ body: { $case: "hello", hello: options.hello } });
    });
  }

  /** Whether the stream is still open. */
  get open(): boolean {
    return this.isOpen;
  }

  /** Sends a message; false if the stream has ended (the message is dropped). */
  send(message: ConnectRequest): boolean {
    if (!this.isOpen) return false;
    this.call.write(message);
    return true;
  }

  /** Sends an op's outcome as OpResult; false if the stream has ended. */
  sendResult(outcome: OpOutcome): boolean {
    return this.send({ body: { $case: "opResult", opResult: opResultToProto(outcome) } });
  }

  /** Sends an op's progress as OpProgress; false if the stream has ended (progress is not kept). */
  sendProgress(progress: OpProgressEvent): boolean {
    return this.send({ body: { $case: "opProgress", opProgress: opProgressToProto(progress) } });
  }

  /**
   * Half-closes the stream and waits up to `timeoutMs` for the controller to
   * end it too; then cancels it.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.isOpen) {
      this.call.end();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.ended, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    this.call.cancel();
  }
}
