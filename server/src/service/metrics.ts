/**
 * `GET /metrics` in the Prometheus text format, on the service's own port.
 *
 * Counters and histograms are this replica's (Prometheus sums replicas);
 * the job gauges are read from the shared database at scrape time, so every
 * replica reports the same cluster-wide counts. Default process metrics
 * (memory, CPU, event-loop lag) come from prom-client.
 */
import type { Interceptor } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "pino";
import type { JobStore, ProgressCounts } from "../store/store.js";
import type { WatchHub } from "./watch-hub.js";
import type { WorkNotifier } from "./work-notifier.js";

/** What serve() needs of an HTTP/1.1 or HTTP/2 response. */
interface MinimalResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

/**
 * How often the event-loop lag (populus_server_nodejs_eventloop_lag_*) is sampled, ms. prom-client's
 * 10 ms default woke an idle server a hundred times a second: 3,000 context switches and 1.4-1.8%
 * of a core in 30 s with no client, against about 380 and 1.1% at 100 ms. A stall longer than
 * this is always sampled (as up to this much shorter than it was); a shorter one may be missed.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** One scrape of /metrics: the tables' counts once read for it. */
interface Scrape {
  counts?: Promise<[string, ProgressCounts][]>;
}

export class ServerMetrics {
  readonly registry = new Registry();
  /** Jobs leased by Reserve, per table. */
  readonly reservations: Counter<"table">;
  /** Results committed by Complete, per table. */
  readonly completions: Counter<"table">;
  /** Failures recorded by Fail, per table. */
  readonly failures: Counter<"table">;
  /** Leases that expired and went back to pending or to error (this replica's sweeps). */
  readonly leaseExpiries: Counter;
  /** ClaimRefresh answers, per table and outcome: granted, running (another refresh holds it) or recent. */
  readonly refreshClaims: Counter<"table" | "outcome">;
  private readonly rpcDuration: Histogram<"method" | "code">;
  /** The scrape in progress, if any (serve); a newer one takes over from an overlapping older one. */
  private scrape: Scrape | undefined;

  constructor(store: JobStore, hub: WatchHub, notifier: WorkNotifier, logger: Logger) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "populus_server_", eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    this.reservations = new Counter({ name: "populus_reservations_total", help: "Jobs leased by Reserve on this replica.", labelNames: ["table"], registers });
    this.completions = new Counter({
      name: "populus_completions_total",
      help: "Results committed by Complete on this replica.",
      labelNames: ["table"],
      registers,
    });
    this.failures = new Counter({ name: "populus_failures_total", help: "Failures recorded by Fail on this replica.", labelNames: ["table"], registers });
    this.leaseExpiries = new Counter({
      name: "populus_lease_expiries_total",
      help: "Reserved jobs whose lease expired, returned by this replica's sweep.",
      registers,
    });
    this.refreshClaims = new Counter({
      name: "populus_refresh_claims_total",
      help: "ClaimRefresh answers on this replica: granted, or held back because a refresh was running or finished recently.",
      labelNames: ["table", "outcome"],
      registers,
    });
    this.rpcDuration = new Histogram({
      name: "populus_rpc_duration_seconds",
      help: "JobService call latency on this replica, by method and gRPC code (streams: until the stream ends).",
      labelNames: ["method", "code"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    new Gauge({
      name: "populus_watch_subscribers",
      help: "Watch streams open on this replica.",
      registers,
      collect() {
        this.set(hub.watcherCount);
      },
    });
    new Gauge({
      name: "populus_reserve_waiting",
      help: "Reserve calls on this replica waiting for work (long-polls), between their looks at the queue.",
      registers,
      collect() {
        this.set(notifier.waiting);
      },
    });
    new Gauge({
      name: "populus_refresh_claims_waiting",
      help: "ClaimRefresh long-polls on this replica: idle workers waiting for work or for their table's refresh to come due.",
      registers,
      collect() {
        this.set(notifier.idleWaiting);
      },
    });
    // Both gauges below take one read of every table's counts per scrape (countsOfScrape).
    const countsOfScrape = () => this.countsOfScrape(store);
    new Gauge({
      name: "populus_jobs",
      help: "Jobs by table and status (cluster-wide, read from the database at scrape time).",
      labelNames: ["table", "status"],
      registers,
      async collect() {
        this.reset();
        try {
          for (const [table, c] of await countsOfScrape()) {
            for (const status of ["pending", "reserved", "success", "error", "ignore"] as const) this.set({ table, status }, c[status]);
          }
        } catch (err) {
          logger.warn({ err }, "metrics: reading job counts failed");
        }
      },
    });
    new Gauge({
      name: "populus_target_rows",
      help: "Computed rows in each table's target (cluster-wide).",
      labelNames: ["table"],
      registers,
      async collect() {
        this.reset();
        try {
          for (const [table, c] of await countsOfScrape()) this.set({ table }, c.target);
        } catch (err) {
          logger.warn({ err }, "metrics: reading target counts failed");
        }
      },
    });
  }

  /**
   * The tables' counts for the job and target gauges: one read per scrape (serve), shared by both.
   * prom-client collects every metric of a scrape at once, so each gauge's read used to run beside
   * the other's, and each counts every job and target row of every table. Outside a scrape, a read
   * of its own.
   */
  private countsOfScrape(store: JobStore): Promise<[string, ProgressCounts][]> {
    const read = async () => {
      const all: [string, ProgressCounts][] = [];
      for (const t of await store.listTables()) all.push([t.name, await store.getProgress(t.name)]);
      return all;
    };
    if (this.scrape === undefined) return read();
    if (this.scrape.counts === undefined) {
      this.scrape.counts = read();
      this.scrape.counts.catch(() => undefined); // each gauge reports the failure it awaits
    }
    return this.scrape.counts;
  }

  /** A JobService call refused before connect-es took it (watch-refusal.ts): recorded as the interceptor records a call. */
  refused(method: string, code: string): void {
    this.rpcDuration.observe({ method, code }, 0);
  }

  /** Times every JobService call; sits outside the error mapping, so it sees the final code. */
  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (req.service.typeName !== "populus.v1.JobService") return next(req);
      // performance.now() and one labels object, not startTimer's hrtime pairs and label merges.
      const method = req.method.name;
      const started = performance.now();
      const end = (code: string) => this.rpcDuration.observe({ method, code }, (performance.now() - started) / 1000);
      try {
        const res = await next(req);
        if (!res.stream) {
          end("OK");
          return res;
        }
        const messages = res.message;
        return {
          ...res,
          message: (async function* () {
            let code = "OK";
            try {
              yield* messages;
            } catch (err) {
              code = codeOf(err);
              throw err;
            } finally {
              end(code);
            }
          })(),
        };
      } catch (err) {
        end(codeOf(err));
        throw err;
      }
    };
  }

  /** Answers GET /metrics; false for any other request (not ours). */
  serve(req: { url?: string; method?: string }, res: MinimalResponse): boolean {
    if (req.url !== "/metrics" && !req.url?.startsWith("/metrics?")) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end("");
      return true;
    }
    const scrape: Scrape = {};
    this.scrape = scrape;
    this.registry
      .metrics()
      .then(
        (text) => {
          res.writeHead(200, { "content-type": this.registry.contentType });
          res.end(req.method === "HEAD" ? "" : text);
        },
        () => {
          res.writeHead(500, {});
          res.end("");
        },
      )
      .finally(() => {
        if (this.scrape === scrape) this.scrape = undefined;
      });
    return true;
  }
}

/** The gRPC code name of an error, as grpc-go's and grpc-java's metrics label it (e.g. "NotFound"). */
function codeOf(err: unknown): string {
  const code = ConnectError.from(err).code;
  return Code[code] ?? String(code);
}
