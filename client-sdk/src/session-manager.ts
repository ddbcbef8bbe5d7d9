/**
 * The HTTP/2 connection of one `connect()`: connect-node's session manager
 * with receive windows sized for Watch streams.
 *
 * HTTP/2's default windows are 64 KiB for each stream and 64 KiB for the
 * whole connection, and node:http2 opens them again only as this process
 * reads what arrived. A Watch stream with job events carries about 10 bytes
 * a job (20,000 jobs/s is 200 KB/s per stream), and every stream of a
 * connection shares its one window: ten event streams on one connection, in
 * a process also busy with other work, kept the server waiting for window
 * so long that they fell 10,000 events behind and were cut (bench scenario
 * 5 on SQLite: commit→event delay p99 663-1,872 ms; with the wider windows
 * 107-149 ms, and none cut). What a stream holds unread is still bounded by
 * its own window: node:http2 returns a connection's credit as data arrives,
 * a stream's only as it is read.
 */
import type http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/** The receive window of each stream the SDK opens, bytes (HTTP/2's default is 65,535). */
export const STREAM_WINDOW_BYTES = 1 << 20;

/** The receive window of the whole connection, shared by its streams, bytes (default 65,535). */
export const CONNECTION_WINDOW_BYTES = 16 << 20;

type RequestArgs = Parameters<Http2SessionManager["request"]>;

/** An Http2SessionManager whose connections open with the windows above. */
export class WideWindowSessionManager extends Http2SessionManager {
  /** Connections whose window was widened; a reconnect makes a new one. */
  readonly #widened = new WeakSet<http2.Http2Session>();

  constructor(url: string, pingOptions: ConstructorParameters<typeof Http2SessionManager>[1], options: http2.SecureClientSessionOptions = {}) {
    super(url, pingOptions, { ...options, settings: { ...options.settings, initialWindowSize: STREAM_WINDOW_BYTES } });
  }

  override async request(...args: RequestArgs): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    // connect-node opens connections inside; its first request is where this class sees one.
    const session = stream.session;
    if (session !== undefined && !this.#widened.has(session)) {
      this.#widened.add(session);
      if (!session.destroyed) session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    }
    return stream;
  }
}
