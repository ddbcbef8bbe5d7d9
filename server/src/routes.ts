/**
 * The routes on the one port: JobService, plus the standard health and
 * reflection services. Every JobService error passes through toConnectError.
 */
import type { ConnectRouter, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { Health } from "@populus/sdk/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@populus/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "@populus/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { JobService } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import type { Logger } from "pino";
import { toConnectError } from "./errors.js";
import { createHealthService, type HealthState } from "./service/health.js";
import { ReflectionIndex, reflectionV1, reflectionV1alpha } from "./service/reflection.js";
import { answerUndecodableBodiesAsInvalid } from "./service/undecodable-bodies.js";
import type { ServerMetrics } from "./service/metrics.js";
import type { WatchHub } from "./service/watch-hub.js";
import type { WorkNotifier } from "./service/work-notifier.js";
import type { JobStore } from "./store/store.js";

/** Maps every handler error to its gRPC code in one place (errors.ts); `observe` sees each error first. */
export function errorMappingInterceptor(logger: Logger, observe: (err: unknown) => void = () => undefined): Interceptor {
  const mapped = (err: unknown, rpc: string) => {
    observe(err);
    return toConnectError(err, rpc, logger);
  };
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      // A server stream fails while it is read, after next() has answered: map those errors too.
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* messages;
          } catch (err) {
            throw mapped(err, req.method.name);
          }
        })(),
      };
    } catch (err) {
      throw mapped(err, req.method.name);
    }
  };
}

export interface RouteDeps {
  readonly store: JobStore;
  readonly notifier: WorkNotifier;
  readonly hub: WatchHub;
  readonly metrics?: ServerMetrics;
  readonly logger: Logger;
  /** Aborted on SIGTERM: streams end and health answers NOT_SERVING. */
  readonly shutdownSignal: AbortSignal;
  /** What grpc.health.v1.Health reports; main.ts sets NOT_SERVING on SIGTERM. */
  readonly health: HealthState;
}

/** The routes; `jobService` is JobService's implementation (createJobService), which main.ts shares with unary-fast-path.ts. */
export function routes(deps: RouteDeps, jobService: ServiceImpl<typeof JobService>) {
  return (router: ConnectRouter) => {
    router.service(JobService, jobService);
    router.service(Health, createHealthService(deps.health));
    // Keep reflection last: it describes every service registered above, and itself.
    const reflection = new ReflectionIndex([...router.handlers.map((h) => h.service), ServerReflection, ServerReflectionV1alpha]);
    router.service(ServerReflection, reflectionV1(reflection));
    router.service(ServerReflectionV1alpha, reflectionV1alpha(reflection));
    answerUndecodableBodiesAsInvalid(router);
  };
}
