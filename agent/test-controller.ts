/**
 * A tiny in-process AgentService for tests of the agent: answers Hello
 * with a given HelloAck, records reports, progress and results, and acks results
 * automatically or when told.
 */
import { Server, ServerCredentials, status, type Metadata, type ServerDuplexStream } from "@grpc/grpc-js";
import {
  AgentServiceService,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  type HelloAck,
  type OpProgress,
  type OpResult,
  type ResourceReport,
} from "../gen/novamesh/agent/v1/agent.js";

/** One agent stream as the test controller saw it. */
export class TestSession {
  readonly reports: ResourceReport[] = [];
  readonly results: OpResult[] = [];
  readonly progress: OpProgress[] = [];
  ended = false;

  constructor(
    readonly hello: Hello,
    readonly metadata: Metadata,
    private readonly call: ServerDuplexStream<ConnectRequest, ConnectResponse>,
  ) {}

  /** Sends OpResultAck. */
  ack(opId: string): void {
    this.call.write({ body: { $case: "opResultAck", opResultAck: { opId } } });
  }

  /** Ends the stream with UNAVAILABLE, as a controller that goes away. */
  kill(): void {
    this.call.emit("error", { code: status.UNAVAILABLE, details: "test controller dropped the stream" });
  }
}

/** See the module comment. */
export class TestController {
  readonly sessions: TestSession[] = [];
  /** Ack every result as it arrives. */
  autoAck = true;

  private constructor(
    private readonly server: Server,
    /** `127.0.0.1:<port>`. */
    readonly address: string,
  ) {}

  /** Listens on a free port and answers Hello with `helloAck`. */
  static async start(helloAck: HelloAck): Promise<TestController> {
    const server = new Server();
    let self: TestController | undefined;
    server.addService(AgentServiceService, {
      connect(call: ServerDuplexStream<ConnectRequest, ConnectResponse>) {
        let session: TestSession | undefined;
        call.on("data", (msg: ConnectRequest) => {
          const body = msg.body;
          if (!session) {
            if (body?.$case !== "hello") {
              call.emit("error", { code: status.INVALID_ARGUMENT, details: "first message must be Hello" });
              return;
            }
            session = new TestSession(body.hello, call.metadata, call);
            self!.sessions.push(session);
            call.write({ body: { $case: "helloAck", helloAck } });
          } else if (body?.$case === "report") {
            session.reports.push(body.report);
          } else if (body?.$case === "opProgress") {
            session.progress.push(body.opProgress);
          } else if (body?.$case === "opResult") {
            session.results.push(body.opResult);
            if (self!.autoAck) session.ack(body.opResult.opId);
          }
        });
        call.on("end", () => {
          if (session) session.ended = true;
          call.end();
        });
        call.on("error", () => undefined);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    self = new TestController(server, `127.0.0.1:${port}`);
    return self;
  }

  /** The newest session. */
  get last(): TestSession | undefined {
    return this.sessions.at(-1);
  }

  /** Every result received, over all sessions. */
  get results(): OpResult[] {
    return this.sessions.flatMap((s) => s.results);
  }

  /** Polls until `probe` returns something, or rejects after `timeoutMs`. */
  async waitFor<T>(
    what: string,
    probe: () => T | undefined | false | Promise<T | undefined | false>,
    timeoutMs = 5_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops at once, cutting every stream. */
  async stop(): Promise<void> {
    this.server.forceShutdown();
  }
}
