/**
 * Answers the controller's direct questions (AgentQuery over NATS request
 * and reply on the subject HelloAck names): asked of the driver at once,
 * never queued behind ops, since they change nothing.
 */
import type { Msg, NatsConnection, Subscription } from "nats";
import type { Logger } from "pino";
import { AgentQuery, AgentQueryReply } from "../../gen/novamesh/agent/v1/agent.js";
import { lastLines } from "../drivers/console-tail.js";
import type { Driver } from "../drivers/driver.js";
import { DriverError } from "../drivers/errors.js";

/** The most console bytes an answer carries, whatever the question asks. */
const MAX_CONSOLE_BYTES = 1024 * 1024;

export class QueryResponder {
  private constructor(
    private readonly sub: Subscription,
    readonly subject: string,
  ) {}

  /** Subscribes to `subject` and answers what arrives there until {@link stop}. */
  static start(nats: NatsConnection, subject: string, driver: Driver, log: Logger): QueryResponder {
    const sub = nats.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          log.warn({ err, subject }, "query subscription failed");
          return;
        }
        void answer(driver, msg, log);
      },
    });
    return new QueryResponder(sub, subject);
  }

  stop(): void {
    this.sub.unsubscribe();
  }
}

async function answer(driver: Driver, msg: Msg, log: Logger): Promise<void> {
  let reply: AgentQueryReply;
  try {
    reply = await run(driver, AgentQuery.decode(msg.data));
  } catch (err) {
    const e = DriverError.from(err);
    if (e.code === "INTERNAL") log.warn({ err }, "query failed");
    reply = { result: { $case: "error", error: { code: e.code, message: e.message } } };
  }
  if (msg.reply) msg.respond(AgentQueryReply.encode(reply).finish());
}

async function run(driver: Driver, q: AgentQuery): Promise<AgentQueryReply> {
  switch (q.query?.$case) {
    case "consoleOutput": {
      const { serverId, lines, maxBytes } = q.query.consoleOutput;
      const text = await driver.consoleOutput({ instanceId: serverId, maxBytes: Math.min(Math.max(maxBytes, 1), MAX_CONSOLE_BYTES) });
      return { result: { $case: "consoleOutput", consoleOutput: { output: lastLines(text, lines) } } };
    }
    default:
      throw new DriverError("NOT_SUPPORTED", "this agent does not know that query");
  }
}
