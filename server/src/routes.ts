/**
 * The routes on the one port: JobService, plus the standard health and
 * reflection services. Every JobService error passes through toConnectError.
 */
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { JobService } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import type { Logger } from "pino";
import { toConnectError } from "./errors.js";
import { createJobService } from "./service/job-service.js";
import type { WorkNotifier } from "./service/work-notifier.js";
import type { JobStore } from "./store/store.js";

/** Maps every handler error to its gRPC code in one place (errors.ts). */
export function errorMappingInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      throw toConnectError(err, req.method.name, logger);
    }
  };
}

export interface RouteDeps {
  readonly store: JobStore;
  readonly notifier: WorkNotifier;
  readonly logger: Logger;
  /** Aborted on SIGTERM: streams end and health answers NOT_SERVING. */
  readonly shutdownSignal: AbortSignal;
}

export function routes(deps: RouteDeps) {
  return (router: ConnectRouter) => {
    router.service(JobService, createJobService(deps.store, deps.notifier));
  };
}
