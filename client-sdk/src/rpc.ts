/**
 * The JobService connection of one `connect()`: the generated client over an
 * HTTP/2 Connect transport of its own, with the bearer token, retries
 * (retry.ts) and typed errors (errors.ts) applied to every unary call. The
 * rest of the SDK calls the server only through this.
 */
import { type CallOptions, type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { ResolvedConnectOptions } from "./config.js";
import { fromRpcError } from "./errors.js";
import { JobService } from "./gen/populus/v1/job_service_pb.js";
import { withRetry } from "./retry.js";

/** The unary JobService RPCs, retried and with typed errors. Watch is not here (issue 4's progress part). */
export type JobServiceRpc = Omit<Client<typeof JobService>, "watch">;

/** A connection to one server. */
export interface JobServiceConnection {
  /** The unary RPCs. */
  readonly rpc: JobServiceRpc;
  /** Closes the HTTP/2 connection; calls after this open a new one. */
  close(): void;
}

/** Opens (lazily: on the first call) a connection to `options.url`. */
export function openConnection(options: ResolvedConnectOptions): JobServiceConnection {
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token !== undefined) {
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    });
  }
  // Our own session manager so that close() can end the connection; idle
  // connections are unref'd by connect-node and never keep a process alive.
  const sessionManager = new Http2SessionManager(options.url);
  const raw = createClient(JobService, createConnectTransport({ baseUrl: options.url, httpVersion: "2", sessionManager, interceptors }));
  const rpc = {} as Record<string, unknown>;
  for (const name of Object.keys(JobService.method)) {
    if (name === "watch") continue;
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
