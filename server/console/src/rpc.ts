/**
 * The console's JobService client: Connect protocol over fetch to the page's own origin, with
 * the operator's bearer token on every call.
 */
import { Code, ConnectError, type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { JobService } from "@populus/sdk/gen/populus/v1/job_service_pb.js";

export type JobClient = Client<typeof JobService>;

/** A client whose calls carry the token `token()` answers at call time (none when null). */
export function createJobClient(token: () => string | null): JobClient {
  const bearer: Interceptor = (next) => (req) => {
    const t = token();
    if (t !== null) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: location.origin,
    // The server encodes each Watch message once for all binary readers (job-service.ts); JSON is encoded per stream.
    useBinaryFormat: true,
    interceptors: [bearer],
  });
  return createClient(JobService, transport);
}

/** A failed call as the page shows it: the server's message, and its code. */
export interface CallFailure {
  readonly code: Code;
  readonly message: string;
}

/** What went wrong in words an operator reads; fetch's own failure means the server did not answer. */
export function callFailure(err: unknown): CallFailure {
  const e = ConnectError.from(err);
  if (e.code === Code.Unknown && /fetch|network|load failed/i.test(e.rawMessage)) {
    return { code: Code.Unavailable, message: "the server cannot be reached" };
  }
  return { code: e.code, message: e.rawMessage };
}

/** "permission_denied"-style name of a code, as grpcurl and the server's logs write it. */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}
