/**
 * The JobService connection of one `connect()`: the generated client over the
 * SDK's HTTP/2 Connect transport (transport.ts), with the bearer token,
 * retries (retry.ts) and typed errors (errors.ts) applied to every unary
 * call, and typed errors to the Watch stream. The rest of the SDK calls the
 * server only through this.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import { type CallOptions, type Client, createClient } from "@connectrpc/connect";
import type { ResolvedConnectOptions } from "./config.js";
import { fromRpcError } from "./errors.js";
import { JobService, ReserveResponseSchema, WatchResponseSchema } from "./gen/populus/v1/job_service_pb.js";
import { withRetry } from "./retry.js";
import { WideWindowSessionManager } from "./session-manager.js";
import { createTransport } from "./transport.js";
import { decodeReserveResponse } from "./wire-columns.js";
import { decodeWatchResponse } from "./wire-watch.js";

/**
 * The JobService RPCs with typed errors. The unary ones are retried; Watch
 * is not, since a blind repeat would replay events: watch.ts reconnects it
 * with the last cursor it saw.
 */
export type JobServiceRpc = Client<typeof JobService>;

/** A connection to one server. */
export interface JobServiceConnection {
  /** The RPCs. */
  readonly rpc: JobServiceRpc;
  /** Closes the HTTP/2 connection; calls after this open a new one. */
  close(): void;
}

/** Opens (lazily: on the first call) a connection to `options.url`. */
export function openConnection(options: ResolvedConnectOptions): JobServiceConnection {
  // Our own session manager so that close() can end the connection; idle
  // connections are unref'd by connect-node and never keep a process alive.
  //
  // Pings every 30 s on a connection that received nothing for that long:
  // a Watch stream can be quiet for hours, and without pings a connection
  // that died silently (a NAT or a peer gone without a FIN) would leave it
  // waiting forever instead of failing and reconnecting. Idle connections
  // still close after connect-node's 15 min.
  //
  // maxSessionMemory: Node's default of 10 MB would refuse every new call on
  // the connection (ENHANCE_YOUR_CALM, not retried) while a large Complete
  // batch is being sent; the server accepts requests of up to 16 MiB.
  // ca: a private CA for https:// URLs (connect({ caFile }) / POPULUS_CA_FILE).
  // Receive windows wide enough for Watch streams: session-manager.ts.
  const sessionManager = new WideWindowSessionManager(
    options.url,
    { pingIntervalMs: 30_000 },
    { maxSessionMemory: 64, ...(options.ca === undefined ? {} : { ca: options.ca }) },
  );
  // Binary: the reserve loop sends Complete's lease tokens pre-encoded as an unknown field
  // (wire-ascii.ts), which the JSON format would drop. Reserve's answer in columns and Watch's
  // messages are decoded by hand (wire-columns.ts, wire-watch.ts).
  const decoders = new Map<DescMessage, (body: Uint8Array) => unknown>([
    [ReserveResponseSchema, decodeReserveResponse],
    [WatchResponseSchema, decodeWatchResponse],
  ]);
  const raw = createClient(JobService, createTransport({ baseUrl: options.url, sessionManager, token: options.token, decoders }));
  const rpc = {} as Record<string, unknown>;
  for (const name of Object.keys(JobService.method)) {
    if (name === "watch") {
      rpc[name] = (req: Parameters<typeof raw.watch>[0], opts?: CallOptions) => typedErrors(raw.watch(req, opts));
      continue;
    }
    const method = (raw as unknown as Record<string, (req: unknown, opts?: CallOptions) => Promise<unknown>>)[name];
    if (method === undefined) continue;
    rpc[name] = async (req: unknown, opts?: CallOptions) => {
      try {
        return await withRetry(() => method(req, opts), opts?.signal);
      } catch (err) {
        throw fromRpcError(err);
      }
    };
  }
  return {
    rpc: rpc as unknown as JobServiceRpc,
    close: () => sessionManager.abort(),
  };
}

/** The stream with every error it throws mapped to the SDK's typed errors. */
async function* typedErrors<T>(stream: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  try {
    yield* stream;
  } catch (err) {
    throw fromRpcError(err);
  }
}
