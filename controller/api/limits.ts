/**
 * Per-token admission: a token bucket of requests per token (admins have
 * their own, by default unlimited), and caps on the streams open at once
 * per token and in total (server and client streams of the public API), and
 * on the agent streams (AgentService/Connect) per token. The rpc wrappers
 * (rpc.ts) admit every call here, so no handler can forget it. A refusal is
 * RESOURCE_EXHAUSTED with RetryInfo (when to try again) and QuotaFailure
 * (which limit, for which token).
 */
import { status } from "@grpc/grpc-js";
import type { Principal } from "../domain/types.js";
import { ApiError } from "../errors.js";

export interface LimitsConfig {
  /** Requests per second per member token (0: unlimited). */
  readonly ratePerSecond: number;
  /** Requests a member token may make at once before the rate applies. */
  readonly rateBurst: number;
  /** Requests per second per admin token (0: unlimited). */
  readonly adminRatePerSecond: number;
  /** The burst of an admin token. */
  readonly adminRateBurst: number;
  /** Public streams (WatchServers, DownloadImageData, UploadImageData) one token may hold open (0: no cap). */
  readonly maxStreamsPerToken: number;
  /** Public streams open at once in this controller (0: no cap). */
  readonly maxStreams: number;
  /** AgentService/Connect streams one token may hold open (0: no cap). */
  readonly maxAgentStreamsPerToken: number;
}

/** The limits of a controller when none are configured: far above what clients and agents normally do. */
export const DEFAULT_LIMITS: LimitsConfig = {
  ratePerSecond: 200,
  rateBurst: 1000,
  adminRatePerSecond: 0,
  adminRateBurst: 1000,
  maxStreamsPerToken: 32,
  maxStreams: 2048,
  maxAgentStreamsPerToken: 256,
};

/** A limit that refused a call: RESOURCE_EXHAUSTED, with when to retry and what was exceeded. */
export function limitExceeded(o: { limit: string; subject: string; description: string; retryAfterMs: number }): ApiError {
  return new ApiError(status.RESOURCE_EXHAUSTED, `${o.description}; retry in ${Math.ceil(o.retryAfterMs)} ms`, {
    reason: "RATE_LIMITED",
    metadata: { limit: o.limit },
    retryDelayMs: o.retryAfterMs,
    quotaViolations: [{ subject: o.subject, description: o.description }],
  });
}

interface Bucket {
  tokens: number;
  at: number;
  readonly rate: number;
  readonly burst: number;
}

/** When a refused stream may try again: streams are held long, so a second is as good a guess as any. */
const STREAM_RETRY_MS = 1000;

/** Buckets that refilled completely are dropped once there are more than this many. */
const SWEEP_AT = 1024;

export class Limits {
  private readonly buckets = new Map<string, Bucket>();
  private readonly streams = new Map<string, number>();
  private readonly agentStreams = new Map<string, number>();
  private openStreams = 0;

  constructor(
    readonly config: LimitsConfig = DEFAULT_LIMITS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one request from `p`'s bucket, or throws RESOURCE_EXHAUSTED saying when one is back. */
  admit(p: Principal): void {
    const admin = p.role === "admin";
    const rate = admin ? this.config.adminRatePerSecond : this.config.ratePerSecond;
    if (rate <= 0) return;
    const burst = Math.max(1, admin ? this.config.adminRateBurst : this.config.rateBurst);
    const t = this.now();
    let b = this.buckets.get(p.tokenId);
    if (!b) {
      if (this.buckets.size >= SWEEP_AT) this.sweep(t);
      b = { tokens: burst, at: t, rate, burst };
      this.buckets.set(p.tokenId, b);
    }
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return;
    }
    throw limitExceeded({
      limit: admin ? "admin_rate" : "rate",
      subject: `token:${p.tokenId}`,
      description: `more than ${rate} requests per second (burst ${burst}) with this token`,
      retryAfterMs: ((1 - b.tokens) / rate) * 1000,
    });
  }

  /** Drops the buckets that are full again (their tokens were idle long enough). */
  private sweep(t: number): void {
    for (const [id, b] of this.buckets) {
      if (b.tokens + ((t - b.at) / 1000) * b.rate >= b.burst) this.buckets.delete(id);
    }
  }

  /**
   * Counts a public stream of `p` as open, or throws RESOURCE_EXHAUSTED when
   * the token's or the controller's cap is reached. The returned function
   * closes it (once; calling it again does nothing).
   */
  openStream(p: Principal): () => void {
    const mine = this.streams.get(p.tokenId) ?? 0;
    const perToken = this.config.maxStreamsPerToken;
    const total = this.config.maxStreams;
    if (perToken > 0 && mine >= perToken) {
      throw limitExceeded({
        limit: "streams_per_token",
        subject: `token:${p.tokenId}`,
        description: `this token already holds ${mine} open streams, the most one token may`,
        retryAfterMs: STREAM_RETRY_MS,
      });
    }
    if (total > 0 && this.openStreams >= total) {
      throw limitExceeded({
        limit: "streams",
        subject: "controller",
        description: `this controller already serves ${this.openStreams} open streams, the most it takes`,
        retryAfterMs: STREAM_RETRY_MS,
      });
    }
    this.streams.set(p.tokenId, mine + 1);
    this.openStreams++;
    return this.closer(() => {
      this.openStreams--;
      decrement(this.streams, p.tokenId);
    });
  }

  /** As openStream, for AgentService/Connect streams (a cap per token only). */
  openAgentStream(p: Principal): () => void {
    const mine = this.agentStreams.get(p.tokenId) ?? 0;
    const cap = this.config.maxAgentStreamsPerToken;
    if (cap > 0 && mine >= cap) {
      throw limitExceeded({
        limit: "agent_streams_per_token",
        subject: `token:${p.tokenId}`,
        description: `this token already holds ${mine} open agent streams, the most one token may`,
        retryAfterMs: STREAM_RETRY_MS,
      });
    }
    this.agentStreams.set(p.tokenId, mine + 1);
    return this.closer(() => decrement(this.agentStreams, p.tokenId));
  }

  /** Open public streams: in total, and of one token. */
  open(tokenId?: string): number {
    return tokenId === undefined ? this.openStreams : (this.streams.get(tokenId) ?? 0);
  }

  private closer(fn: () => void): () => void {
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      fn();
    };
  }
}

function decrement(m: Map<string, number>, key: string): void {
  const n = (m.get(key) ?? 0) - 1;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}
