#!/usr/bin/env node
/**
 * populus-server: wiring only. Parse the configuration, open the store, serve
 * every protocol on one port, and drain on SIGTERM.
 *
 * Exit codes: 0 after a clean shutdown, 2 for a bad configuration, 1 when the
 * server cannot start (database unreachable, port in use) or fails.
 */
import { setMaxListeners } from "node:events";
import { createSecureContext } from "node:tls";
import { createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { CompleteRequestSchema, JobService } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { ConfigError, parseServerConfig, readOptionFile, type ServerConfig } from "./config.js";
import { limitHeapGrowth } from "./heap-growth.js";
import { describeStartupError } from "./startup-error.js";
import { listen, type TlsFiles } from "./http-server.js";
import { createLogger } from "./logger.js";
import { errorMappingInterceptor, routes } from "./routes.js";
import { authInterceptor, loadTokens, type TokenTable } from "./service/auth.js";
import { HealthState } from "./service/health.js";
import { DatabaseProbe } from "./service/database-probe.js";
import { PEER_ADDRESS, READ_MAX_BYTES, WatchStreamLimits } from "./service/limits.js";
import { refuseWatchCall } from "./service/watch-refusal.js";
import { ChangeFeed } from "./service/change-feed.js";
import { createJobService } from "./service/job-service.js";
import { unaryFastPath } from "./service/unary-fast-path.js";
import { decodeCompleteRequest } from "./service/wire-complete.js";
import { watchFastPath } from "./service/watch-fast-path.js";
import { ConsoleEndpoints, loadConsoleAssets } from "./service/console.js";
import { ServerMetrics } from "./service/metrics.js";
import { WatchHub } from "./service/watch-hub.js";
import { WorkNotifier } from "./service/work-notifier.js";
import { openStore } from "./store/open-store.js";
import { SqliteStore } from "./store/sqlite/sqlite-store.js";
import { preserveByteOrderMarks } from "./text-encoding.js";

/** How often each replica returns expired leases to pending (ms). */
const LEASE_SWEEP_MS = 1000;
/** How often each replica prunes changes older than the retention (ms). */
const EVENT_PRUNE_MS = 60_000;

function fail(code: number, line: string): never {
  process.stderr.write(`populus-server: ${line}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  preserveByteOrderMarks();
  limitHeapGrowth();
  let config: ServerConfig;
  try {
    const outcome = parseServerConfig(process.argv.slice(2));
    if (outcome.kind === "exit") process.exit(outcome.code);
    config = outcome.config;
  } catch (err) {
    if (err instanceof ConfigError) fail(2, err.message);
    throw err;
  }
  // Tokens and TLS files are read before the database is touched: a bad one is a configuration error (exit 2).
  let tokens: TokenTable | null = null;
  let tls: TlsFiles | undefined;
  try {
    tokens = config.tokens === null ? null : loadTokens(config.tokens);
    tls = config.tls === null ? undefined : readTls(config.tls.certFile, config.tls.keyFile);
  } catch (err) {
    if (err instanceof ConfigError) fail(2, err.message);
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const where = config.database.dialect === "sqlite" ? `sqlite:${config.database.path}` : config.database.display;

  const store = await openStore(config.database, {
    maxLostAttempts: config.maxLostAttempts,
    poolSize: config.dbPoolSize,
    poolWaitMs: config.dbPoolWaitSeconds * 1000,
    cacheMib: config.sqliteCacheMib,
    onCheckpointerError: (err) =>
      logger.warn({ err }, "the SQLite checkpointer thread stopped; the serving connection checkpoints alone, as SQLite does by default"),
  }).catch((err: unknown) => fail(1, `cannot open database ${where}: ${describeStartupError(err)}`));
  const sqliteSettings =
    store instanceof SqliteStore
      ? { pageCacheMib: store.pageCacheMib, synchronous: store.synchronous, largeWritesSynced: "off the event loop, before they are answered" }
      : {};
  logger.info({ database: where, dialect: store.dialect, ...sqliteSettings }, "database ready, migrations applied");

  const feed = new ChangeFeed(store, { logger });
  const notifier = new WorkNotifier(config.reserveRecheckSeconds * 1000, feed);
  // Work made ready through any replica wakes this replica's long-polling Reserve calls.
  feed.subscribe((changes) => {
    for (const c of changes) {
      if ((c.deltas.pending ?? 0) <= 0) continue;
      // First: a long-poll it wakes must not be answered from a read of the table made before.
      store.jobsChangedElsewhere(c.table);
      notifier.notify(c.table);
    }
  });
  await feed.start().catch((err: unknown) => fail(1, `cannot read the change log: ${describeStartupError(err)}`));
  const hub = new WatchHub(store, feed);
  const metrics = new ServerMetrics(store, hub, notifier, logger);
  const shutdown = new AbortController();
  // connect links every call's signal to this one for as long as the call runs: one listener per
  // open call (Watch streams and long-polls stay open), not a leak.
  setMaxListeners(0, shutdown.signal);
  const health = new HealthState();
  const databaseProbe = new DatabaseProbe(store, health, logger);
  databaseProbe.start();
  // Outermost first. Metrics records every final code, auth refusals included; auth runs before
  // the Watch limit, which counts per authenticated token; the error mapping is innermost.
  const interceptors: Interceptor[] = [metrics.interceptor()];
  if (tokens !== null) interceptors.push(authInterceptor(tokens));
  const watchLimits = new WatchStreamLimits(config.maxWatchStreams, config.maxWatchStreamsTotal);
  interceptors.push(
    watchLimits.interceptor(),
    errorMappingInterceptor(logger, (err) => databaseProbe.observe(err)),
  );
  const routeDeps = { store, notifier, hub, metrics, logger, shutdownSignal: shutdown.signal, health };
  const jobService = createJobService(routeDeps);
  // The Watch limit's client without tokens: the peer's address.
  const contextValues = (req: { socket?: { remoteAddress?: string } | null }) =>
    createContextValues().set(PEER_ADDRESS, req.socket?.remoteAddress ?? "unknown");
  const rpcHandler = connectNodeAdapter({
    routes: routes(routeDeps, jobService),
    interceptors,
    readMaxBytes: READ_MAX_BYTES,
    // Responses go uncompressed, whatever the client accepts (compressed requests are still
    // taken). gzip of a 1,000-lease Reserve or of a Watch message of 1,000 events costs this
    // server's CPU, which every worker shares, to save bytes on a LAN: 10 event watchers of a
    // 20,000-job drain took 150 ms more server CPU and 300 ms more client CPU with it.
    compressMinBytes: Number.POSITIVE_INFINITY,
    contextValues,
    shutdownSignal: shutdown.signal,
  });
  // The SDK's unary calls and Watch streams (binary Connect over HTTP/2) skip connect-es's pipeline; the rest goes to rpcHandler.
  const fastPathOptions = {
    service: JobService,
    implementation: jobService,
    interceptors,
    readMaxBytes: READ_MAX_BYTES,
    contextValues,
    shutdownSignal: shutdown.signal,
    logger,
    decoders: new Map([[CompleteRequestSchema, decodeCompleteRequest]]),
  };
  const fastUnary = unaryFastPath(fastPathOptions);
  const fastWatch = watchFastPath(fastPathOptions, "Watch");
  const consoleEndpoints = new ConsoleEndpoints(loadConsoleAssets(), tokens);
  const handler: typeof rpcHandler = (req, res) => {
    if (metrics.serve(req, res) || consoleEndpoints.serve(req, res)) return;
    if (watchLimits.full && refuseWatchCall(req, res, watchLimits.fullMessage)) {
      metrics.refused("Watch", "RESOURCE_EXHAUSTED");
      return;
    }
    if (fastUnary(req, res) || fastWatch(req, res)) return;
    rpcHandler(req, res);
  };

  const server = await listen({ host: config.host, port: config.port, handler, logger, tls }).catch((err: unknown) =>
    fail(1, `cannot listen on ${config.host}:${config.port}: ${describeStartupError(err)}`),
  );
  const url = `${tls === undefined ? "http" : "https"}://${config.host.includes(":") ? `[${config.host}]` : config.host}:${server.port}`;
  if (tokens === null && config.insecure)
    logger.warn({ host: config.host }, "no tokens configured: JobService is open to anyone who reaches this address (--insecure)");
  // Counts only: never a token, nor its hash.
  const auth = tokens === null ? "none" : tokens.roleCounts;

  let sweeping = false;
  const sweep = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    store
      .expireLeases(Date.now())
      .then((n) => {
        if (n > 0) {
          metrics.leaseExpiries.inc(n);
          logger.info({ expired: n }, "expired leases returned");
          notifier.notifyAll();
        }
      })
      .catch((err: unknown) => {
        databaseProbe.observe(err);
        logger.warn({ err }, "lease sweep failed");
      })
      .finally(() => {
        sweeping = false;
      });
  }, LEASE_SWEEP_MS);

  const prune = setInterval(() => {
    store
      .pruneChanges(Date.now() - config.eventRetentionSeconds * 1000)
      .then((n) => n > 0 && logger.debug({ pruned: n }, "old changes pruned"))
      .catch((err: unknown) => logger.warn({ err }, "pruning the change log failed"));
  }, EVENT_PRUNE_MS);
  prune.unref();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceSeconds: config.shutdownGraceSeconds }, "draining");
    clearInterval(sweep);
    clearInterval(prune);
    databaseProbe.stop();
    // NOT_SERVING first: health Watch calls hear it before the abort below ends them.
    health.setServing(false);
    // Watch streams end with UNAVAILABLE, which tells clients to resume elsewhere with their cursor.
    hub.close();
    feed.stop();
    // Aborts handler signals: long-polls answer at once, streams end; unary calls in flight finish.
    shutdown.abort();
    server
      .close(config.shutdownGraceSeconds * 1000)
      .then(() => store.close())
      .then(() => {
        logger.info("stopped");
        process.exit(0);
      })
      .catch((err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      });
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // Last: whoever waits for this line may signal at once, and a SIGTERM that came before the
  // handlers above killed the process outright (exit by signal, no drain).
  logger.info({ host: config.host, port: server.port, url, console: `${url}/`, tls: tls !== undefined, auth }, "listening");
}

/** Reads a PEM file named by an option; unreadable or not PEM is a configuration error. */
function readPem(path: string, option: string): Buffer {
  const pem = readOptionFile(path, option);
  if (!pem.includes("-----BEGIN ")) throw new ConfigError(`${option} ${path}: not a PEM file (no "-----BEGIN" line)`);
  return pem;
}

/** The certificate and key, checked to form a usable pair now rather than at the first handshake. */
function readTls(certFile: string, keyFile: string): TlsFiles {
  const files = { cert: readPem(certFile, "--tls-cert"), key: readPem(keyFile, "--tls-key") };
  try {
    createSecureContext(files);
  } catch (err) {
    const reason = (err as { message?: string }).message?.split("\n")[0] ?? "unusable";
    throw new ConfigError(
      `--tls-cert ${certFile} with --tls-key ${keyFile}: ${/mismatch/i.test(reason) ? "the key does not belong to the certificate" : reason}`,
    );
  }
  return files;
}

main().catch((err: unknown) => fail(1, describeStartupError(err)));
