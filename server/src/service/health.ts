/**
 * grpc.health.v1.Health: what load balancers, Kubernetes gRPC probes and
 * `grpc-health-probe` ask. The server reports the overall status ("") and
 * populus.v1.JobService: SERVING while it runs, NOT_SERVING from SIGTERM on,
 * so traffic moves elsewhere before the drain ends the streams
 * (test/reflection-health.test.ts pins both), and NOT_SERVING while its
 * database does not answer (test/database-outage.test.ts).
 *
 * Failure outcomes, as doc/health-checking.md in grpc/grpc asks:
 * - Check on a service this server does not report: NOT_FOUND.
 * - Watch on such a service: one SERVICE_UNKNOWN message, and the call stays
 *   open (the set of services never changes, so nothing more follows).
 * - List never fails (two entries, far below the limit of 100).
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ServiceNotFoundError } from "../errors.js";
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@populus/sdk/gen/grpc/health/v1/health_pb.js";
import { JobService } from "@populus/sdk/gen/populus/v1/job_service_pb.js";

/**
 * The serving status shared by every reported service: NOT_SERVING from
 * SIGTERM on (main.ts) and while the database does not answer
 * (database-probe.ts); each Watch call hears every change.
 */
export class HealthState {
  /** False from SIGTERM on. */
  private running = true;
  /** False while the database does not answer (database-probe.ts). */
  private databaseReachable = true;
  private readonly listeners = new Set<() => void>();

  /**
   * @param services The names Check, List and Watch know; "" is the server as
   *   a whole. @default ["", "populus.v1.JobService"]
   */
  constructor(readonly services: readonly string[] = ["", JobService.typeName]) {}

  /** SERVING or NOT_SERVING for a reported service; undefined for any other name. */
  status(service: string): ServingStatus | undefined {
    if (!this.services.includes(service)) return undefined;
    return this.serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  /** SERVING needs both: the server is not stopping, and its database answers. */
  private get serving(): boolean {
    return this.running && this.databaseReachable;
  }

  /** Every reported service NOT_SERVING for good (false: the server is stopping); listeners hear only real changes. */
  setServing(running: boolean): void {
    this.change(() => (this.running = running));
  }

  /** Whether the database answers; NOT_SERVING while it does not. */
  setDatabaseReachable(reachable: boolean): void {
    this.change(() => (this.databaseReachable = reachable));
  }

  private change(apply: () => void): void {
    const was = this.serving;
    apply();
    if (this.serving !== was) for (const listener of this.listeners) listener();
  }

  /** Calls listener (synchronously) after each change; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** The Health handlers over one HealthState. */
export function createHealthService(state: HealthState): ServiceImpl<typeof Health> {
  return {
    check(req) {
      const status = state.status(req.service);
      if (status === undefined) {
        throw new ServiceNotFoundError(`unknown service "${req.service}": this server reports ${state.services.map((s) => JSON.stringify(s)).join(" and ")}`);
      }
      return { status };
    },

    list() {
      return { statuses: Object.fromEntries(state.services.map((s) => [s, { status: state.status(s) }])) };
    },

    async *watch(req, ctx: HandlerContext) {
      const current = () => state.status(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
      // Changes are queued by the (synchronous) listener and sent in order, so
      // the NOT_SERVING that main.ts sets just before aborting the shutdown
      // signal goes out before the call ends.
      const changes: ServingStatus[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = state.onChange(() => {
        changes.push(current());
        wake?.();
      });
      const onAbort = () => wake?.();
      ctx.signal.addEventListener("abort", onAbort);
      try {
        let sent = current();
        yield { status: sent };
        for (;;) {
          for (let next = changes.shift(); next !== undefined; next = changes.shift()) {
            if (next === sent) continue;
            sent = next;
            yield { status: sent };
          }
          // Client cancel, deadline or server shutdown: the call ends with OK.
          if (ctx.signal.aborted) return;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
