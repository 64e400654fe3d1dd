import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, nanos } from "nats";
import type { JetStreamManager } from "nats";
import { consumerName, opsSubject } from "./subjects.js";

/**
 * Creates (or updates) the ops stream: a work queue per host subject, file
 * storage, de-duplication on Nats-Msg-Id = op_id over a window long enough for
 * an outbox re-send after a controller restart.
 */
export async function ensureOpsStream(jsm: JetStreamManager, stream: string, prefix: string): Promise<void> {
  const config = {
    name: stream,
    subjects: [`${prefix}.*`],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: nanos(10 * 60 * 1000),
    max_age: nanos(7 * 24 * 3600 * 1000),
  };
  try {
    const info = await jsm.streams.info(stream);
    const same = info.config.subjects?.length === 1 && info.config.subjects[0] === config.subjects[0];
    if (!same) await jsm.streams.update(stream, { ...info.config, subjects: config.subjects });
  } catch (err) {
    if (!/stream not found/i.test(String((err as Error).message))) throw err;
    await jsm.streams.add(config);
  }
}

/**
 * Whether a JetStream API request failed for want of an answer in time (the
 * server busy, or no server answering yet), so that asking again may work.
 */
function transient(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === "TIMEOUT" || code === "503";
}

/** `fn`, asked again with jittered exponential backoff while it fails transiently, `attempts` times in all. */
export async function withJetStreamRetry<T>(fn: () => Promise<T>, attempts = 4, firstDelayMs = 250): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= attempts || !transient(err)) throw err;
      const delay = firstDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * Creates the durable consumer of a host's ops (idempotent); returns its
 * name. A JetStream API that does not answer in time is asked again.
 */
export function ensureHostConsumer(jsm: JetStreamManager, stream: string, prefix: string, host: string): Promise<string> {
  return withJetStreamRetry(() => ensureConsumerOnce(jsm, stream, prefix, host));
}

async function ensureConsumerOnce(jsm: JetStreamManager, stream: string, prefix: string, host: string): Promise<string> {
  const durable = consumerName(host);
  try {
    await jsm.consumers.info(stream, durable);
    return durable;
  } catch (err) {
    if (!/consumer not found/i.test(String((err as Error).message))) throw err;
  }
  await jsm.consumers.add(stream, {
    durable_name: durable,
    filter_subject: opsSubject(prefix, host),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    // Agents keep long ops alive with working(); a dead agent's ops come back
    // this soon after it stopped extending them.
    ack_wait: nanos(15_000),
    max_deliver: -1,
    max_ack_pending: 1000,
  });
  return durable;
}

/**
 * Each host's op consumer backlog: ops not yet delivered and delivered but
 * unacknowledged, for the `hosts` given (consumers of other hosts are left
 * out). One listing of the stream's consumers, a page per 256.
 */
export async function hostConsumerBacklog(jsm: JetStreamManager, stream: string, hosts: readonly string[]): Promise<{ host: string; undelivered: number; unacked: number }[]> {
  const byName = new Map(hosts.map((h) => [consumerName(h), h]));
  const out: { host: string; undelivered: number; unacked: number }[] = [];
  for await (const c of jsm.consumers.list(stream)) {
    const host = byName.get(c.name);
    if (host !== undefined) out.push({ host, undelivered: c.num_pending, unacked: c.num_ack_pending });
  }
  return out;
}
