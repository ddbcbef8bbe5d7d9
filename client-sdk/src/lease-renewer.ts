/**
 * The heartbeat thread's side (heartbeat-thread.ts starts it, once per
 * process): renews the leases the process's reserve loops hold every third
 * of their lease length, and posts back the ones the server answered as lost.
 *
 * Leases come in scopes, one per reserve loop: one server (URL, token, CA),
 * one table and one lease length. Each scope has its own timer, until its
 * loop ends it; each server its own HTTP/2 session,
 * opened at the first renewal, so a populate shorter than a third of a lease
 * never connects at all.
 *
 * It speaks JobService.Heartbeat in the Connect protocol's unary JSON form
 * (a POST of the request as JSON over HTTP/2) with node:http2 alone, not
 * through the generated client: loading connect and protobuf-es made each
 * thread cost about 200 ms of CPU to start, against about 60 ms for a thread
 * that loads node:http2. Heartbeat is one small unary call, so the protocol
 * is a few lines here: https://connectrpc.com/docs/protocol#unary-request.
 *
 * @internal Not part of the public API.
 */
import type http2 from "node:http2";
import { type MessagePort, parentPort } from "node:worker_threads";

/** The leases of one scope: where and how they are renewed. */
export interface RenewerScope {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  readonly token: string | undefined;
  /** PEM text of a private CA, or undefined for the system's trust store. */
  readonly ca: string | undefined;
  readonly table: string;
  /** Lease length asked for at each renewal, seconds. */
  readonly leaseDurationS: number;
}

/** Main → thread. A scope (one reserve loop's leases) is declared before its first hold and ended with its loop; hold and drop carry tokens joined by newlines. */
export type ToRenewer =
  | { readonly type: "scope"; readonly scope: number; readonly init: RenewerScope }
  | { readonly type: "hold"; readonly scope: number; readonly tokens: string }
  | { readonly type: "drop"; readonly scope: number; readonly tokens: string }
  | { readonly type: "progress"; readonly scope: number; readonly token: string; readonly fraction: number; readonly message: string }
  | { readonly type: "end"; readonly scope: number };

/** Thread → main: leases of a scope the server no longer holds for us; or, once, that the thread is running. */
export type FromRenewer = { readonly type: "lost"; readonly scope: number; readonly tokens: readonly string[] } | { readonly type: "ready" };

/** Heartbeat has at most 1000 lease tokens per call (the server's limit). */
const HEARTBEAT_BATCH = 1000;
/** Tries of one Heartbeat call while the server is unavailable, and the first pause (doubling) between them. */
const TRIES = 5;
const FIRST_PAUSE_MS = 200;
/** One call's deadline. */
const CALL_TIMEOUT_MS = 10_000;

/** Connect's error codes that say the call may be tried again (the server did not act on it). */
const RETRYABLE = new Set(["unavailable", "resource_exhausted"]);

interface HeartbeatAnswer {
  readonly lostLeaseTokens?: string[];
}

class CallError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/** A Connect-protocol JSON client of JobService.Heartbeat over one HTTP/2 session, opened on first use and again after it closes. */
class HeartbeatClient {
  #session: http2.ClientHttp2Session | undefined;

  constructor(
    private readonly init: Pick<RenewerScope, "url" | "token" | "ca">,
    /** node:http2, loaded at the first renewal: most populate runs end before one. */
    private readonly http: typeof http2,
  ) {}

  async call(body: unknown): Promise<HeartbeatAnswer> {
    for (let attempt = 1, pause = FIRST_PAUSE_MS; ; attempt++, pause *= 2) {
      try {
        return await this.#post(JSON.stringify(body));
      } catch (err) {
        if (attempt >= TRIES || (err instanceof CallError && !err.retryable)) throw err;
      }
      await new Promise((r) => setTimeout(r, pause / 2 + Math.random() * (pause / 2)));
    }
  }

  #connect(): http2.ClientHttp2Session {
    if (this.#session !== undefined && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const session = this.http.connect(this.init.url, this.init.ca === undefined ? {} : { ca: this.init.ca });
    // A session error also fails its streams, which report it; the next call opens a new session.
    session.on("error", () => undefined);
    session.on("close", () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.unref();
    this.#session = session;
    return session;
  }

  #post(payload: string): Promise<HeartbeatAnswer> {
    return new Promise((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.#connect();
      } catch (err) {
        reject(new CallError(`cannot connect to ${this.init.url}: ${(err as Error).message}`, true));
        return;
      }
      const headers: http2.OutgoingHttpHeaders = {
        ":method": "POST",
        ":path": `${new URL(this.init.url).pathname.replace(/\/$/, "")}/populus.v1.JobService/Heartbeat`,
        "content-type": "application/json",
        "connect-protocol-version": "1",
        "connect-timeout-ms": String(CALL_TIMEOUT_MS),
      };
      if (this.init.token !== undefined) headers.authorization = `Bearer ${this.init.token}`;
      const stream = session.request(headers);
      stream.setTimeout(CALL_TIMEOUT_MS, () => stream.close(this.http.constants.NGHTTP2_CANCEL));
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", (err) => reject(new CallError(`Heartbeat failed: ${err.message}`, true)));
      stream.on("close", () => {
        if (status === 0) return reject(new CallError("Heartbeat: the connection closed before an answer", true));
        let answer: { code?: string; message?: string } & HeartbeatAnswer;
        try {
          answer = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as typeof answer;
        } catch {
          return reject(new CallError(`Heartbeat: HTTP ${status} with a body that is not JSON`, status >= 500));
        }
        if (status === 200) return resolve(answer);
        const code = answer.code ?? "unknown";
        reject(new CallError(`Heartbeat: ${code}: ${answer.message ?? `HTTP ${status}`}`, RETRYABLE.has(code)));
      });
      stream.end(payload);
    });
  }
}

/** The leases of one scope, with progress not yet sent, renewed every third of its lease length. */
class ScopeRenewal {
  readonly held = new Map<string, { fraction: number; message: string } | undefined>();
  readonly #timer: ReturnType<typeof setInterval>;
  #beating = false;

  constructor(
    readonly scope: number,
    private readonly init: RenewerScope,
    private readonly client: () => Promise<HeartbeatClient>,
    private readonly port: MessagePort,
  ) {
    this.#timer = setInterval(() => this.#tick(), (init.leaseDurationS * 1000) / 3);
  }

  /** Its loop is done: nothing of it is renewed again. */
  end(): void {
    clearInterval(this.#timer);
    this.held.clear();
  }

  #tick(): void {
    if (this.#beating || this.held.size === 0) return;
    this.#beating = true;
    void this.#beat().finally(() => (this.#beating = false));
  }

  async #beat(): Promise<void> {
    // proto3 JSON takes a Duration as seconds with at most 9 decimals ("1.5s"); populate allows 1 to 86,400 s.
    const leaseDuration = `${Number(this.init.leaseDurationS.toFixed(9))}s`;
    const tokens = [...this.held.keys()];
    for (let i = 0; i < tokens.length; i += HEARTBEAT_BATCH) {
      const batch = tokens.slice(i, i + HEARTBEAT_BATCH);
      const sent = batch.flatMap((leaseToken) => {
        const p = this.held.get(leaseToken);
        return p === undefined ? [] : [{ leaseToken, p }];
      });
      const progress = sent.map(({ leaseToken, p }) => ({ leaseToken, progress: p.fraction, message: p.message }));
      try {
        const answer = await (await this.client()).call({ table: this.init.table, leaseTokens: batch, leaseDuration, progress });
        // Progress is sent once; a newer report that arrived meanwhile goes with the next beat.
        for (const { leaseToken, p } of sent) if (this.held.get(leaseToken) === p) this.held.set(leaseToken, undefined);
        // A lease the loop dropped while the call was in flight is no news to it.
        const lost = (answer.lostLeaseTokens ?? []).filter((t) => this.held.delete(t));
        if (lost.length > 0) this.port.postMessage({ type: "lost", scope: this.scope, tokens: lost } satisfies FromRenewer);
      } catch {
        // Past the retries the next beat tries again, and a lease that expires meanwhile is
        // answered as lost then (or as LeaseLostError at Complete).
      }
    }
  }
}

/** Renews the held leases of every scope until the thread ends with its process. */
function run(port: MessagePort): void {
  const scopes = new Map<number, ScopeRenewal>();
  const clients = new Map<string, Promise<HeartbeatClient>>();
  const clientOf = (init: RenewerScope) => () => {
    const server = JSON.stringify([init.url, init.token, init.ca]);
    let client = clients.get(server);
    if (client === undefined) {
      client = import("node:http2").then((m) => new HeartbeatClient(init, m.default));
      clients.set(server, client);
    }
    return client;
  };
  port.on("message", (m: ToRenewer) => {
    if (m.type === "scope") {
      scopes.set(m.scope, new ScopeRenewal(m.scope, m.init, clientOf(m.init), port));
      return;
    }
    if (m.type === "end") {
      scopes.get(m.scope)?.end();
      scopes.delete(m.scope);
      return;
    }
    const held = scopes.get(m.scope)?.held;
    if (held === undefined) return;
    if (m.type === "hold") for (const t of m.tokens.split("\n")) held.set(t, undefined);
    else if (m.type === "drop") for (const t of m.tokens.split("\n")) held.delete(t);
    else if (held.has(m.token)) held.set(m.token, { fraction: m.fraction, message: m.message });
  });
  port.postMessage({ type: "ready" } satisfies FromRenewer);
}

if (parentPort !== null) run(parentPort);
