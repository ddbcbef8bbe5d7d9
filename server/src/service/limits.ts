/**
 * Limits on what one client may hold open or send at once, enforced at the
 * transport edge. The per-request value limits (keys per call, key and result
 * sizes) live with the rest of request validation in validate.ts and
 * key-codec.ts; this module owns those that are not about one request's
 * content: the size of a request message and concurrent Watch streams.
 */
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { CALLER } from "./auth.js";

/**
 * Largest request message accepted (connect-node's readMaxBytes), 16 MiB:
 * room for a full Refresh batch (10,000 keys) or Complete batch (1,000
 * results) of ordinary size, and MariaDB's default max_allowed_packet, so one
 * request never turns into a statement the database refuses. Larger messages
 * are RESOURCE_EXHAUSTED before they are decoded.
 */
export const READ_MAX_BYTES = 16 * 1024 * 1024;

/** Default of --max-watch-streams. */
export const DEFAULT_MAX_WATCH_STREAMS = 64;

/** The peer's address, set per request by the node adapter (main.ts); the Watch limit's key without tokens. */
export const PEER_ADDRESS = createContextKey<string>("unknown", { description: "populus peer address" });

/**
 * Default of --max-watch-streams-total: 1,500 open streams (about 90 MB of per-call state) keep a
 * replica under 250 MB even when 5,000 Watch calls arrive at once (bench scenario 8: 227-242 MB;
 * 255-270 MB with 2,000).
 */
export const DEFAULT_MAX_WATCH_STREAMS_TOTAL = 1500;

/**
 * Caps concurrent Watch streams per client: per token when the server
 * authenticates (a shared worker token counts all its holders), else per
 * peer address. Every open stream holds a change-feed subscription and a
 * buffer, so one client looping on Watch must not exhaust the replica for the
 * others. And caps them on the whole replica: an open stream costs it about
 * 60 KB (connect's and HTTP/2's state per call), so 2,000 streams take a
 * replica from about 95 MB to about 220 MB, and 5,000 to 430 MB. Over either
 * cap: RESOURCE_EXHAUSTED, which the SDK's watch() treats as "retry later"
 * and reconnects with its cursor after a backoff.
 *
 * Once the replica is at its cap, a Watch call is refused before connect-es
 * decodes it (watch-refusal.ts): refused through connect, a burst of 5,000
 * calls cost as much memory in flight as 5,000 served ones.
 */
export class WatchStreamLimits {
  readonly #open = new Map<string, number>();
  #total = 0;

  constructor(
    private readonly maxPerClient: number,
    private readonly maxTotal = DEFAULT_MAX_WATCH_STREAMS_TOTAL,
  ) {}

  /** Whether the replica serves as many streams as it may: a new one is refused, whoever asks. */
  get full(): boolean {
    return this.#total >= this.maxTotal;
  }

  /** Why a stream is refused when the replica is full. */
  get fullMessage(): string {
    return `this server already serves ${this.#total} Watch streams, its limit (--max-watch-streams-total); watch through another replica, or retry later`;
  }

  /** Counts each Watch stream from its start to its end, and refuses one over either cap. */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (req.service.typeName !== "populus.v1.JobService" || req.method.localName !== "watch") return next(req);
      const caller = req.contextValues.get(CALLER);
      const client = caller !== undefined ? `token ${caller.id}` : `peer ${req.contextValues.get(PEER_ADDRESS)}`;
      const count = this.#open.get(client) ?? 0;
      if (count >= this.maxPerClient) {
        throw new ConnectError(
          `${count} Watch streams are already open for this client; at most ${this.maxPerClient} are allowed at once (close some, or raise --max-watch-streams)`,
          Code.ResourceExhausted,
        );
      }
      if (this.full) throw new ConnectError(this.fullMessage, Code.ResourceExhausted);
      this.#open.set(client, count + 1);
      this.#total++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.#total--;
        const n = (this.#open.get(client) ?? 1) - 1;
        if (n <= 0) this.#open.delete(client);
        else this.#open.set(client, n);
      };
      // connect aborts the call's signal when the stream ends for any reason (done, error,
      // client gone), even when nobody drains the iterator below to its finally.
      req.signal.addEventListener("abort", release, { once: true });
      if (req.signal.aborted) release();
      try {
        const res = await next(req);
        if (!res.stream) {
          release();
          return res;
        }
        const messages = res.message;
        return {
          ...res,
          message: (async function* () {
            try {
              yield* messages;
            } finally {
              release();
            }
          })(),
        };
      } catch (err) {
        release();
        throw err;
      }
    };
  }
}
