#!/usr/bin/env node
/**
 * populus-worker: wiring only. Parse the configuration, load the pipeline
 * module, run passes (populate-passes.ts) until done or told to stop, exit.
 *
 * Exit codes (exit-codes.ts):
 * - 0 ok: done (--once, or --max-calls reached), or stopped by SIGTERM/SIGINT;
 * - 1 failed: a make failed and --suppress-errors was not given, or populate could not run;
 * - 2 usage: bad usage or configuration (one line on stderr);
 * - 3 pipeline: the pipeline module could not be loaded or exports no table (one line on stderr).
 */
import { InvalidConfigError, config as sdkConfig } from "@populus/sdk";
import { parseWorkerConfig, type WorkerConfig } from "./config.js";
import { ConfigError } from "./config-error.js";
import { exportConnectSettings } from "./connection-config.js";
import { errorLine } from "./error-line.js";
import { ExitCode } from "./exit-codes.js";
import { createLogger } from "./logger.js";
import { loadPipeline, PipelineLoadError, type PipelineTable, selectTables } from "./pipeline-module.js";
import { runPasses, type WorkerState } from "./populate-passes.js";

function fail(code: number, line: string): never {
  process.stderr.write(`populus-worker: ${line}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let config: WorkerConfig;
  try {
    const outcome = parseWorkerConfig(process.argv.slice(2));
    if (outcome.kind === "exit") {
      process.stderr.write(outcome.stderr);
      process.exit(outcome.code);
    }
    config = outcome.config;
    // The SDK reads its job variables (POPULUS_STALE_TIMEOUT, ...) at their first use: read them now, so
    // that a bad one is refused here as bad usage, not met by the first populate.
    void sdkConfig.jobs;
  } catch (err) {
    if (err instanceof ConfigError || err instanceof InvalidConfigError) fail(ExitCode.usage, err.message);
    throw err;
  }
  const logger = createLogger(config.logLevel);
  exportConnectSettings(config);

  let tables: PipelineTable[];
  try {
    tables = selectTables(await loadPipeline(config.pipeline, process.cwd()), config.tables);
  } catch (err) {
    if (err instanceof ConfigError) fail(ExitCode.usage, err.message);
    if (err instanceof PipelineLoadError) fail(ExitCode.pipeline, err.message);
    throw err;
  }

  let state: WorkerState = "running";
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (state !== "running") return;
    state = "stopping";
    logger.info({ signal, state, graceSeconds: config.graceS }, "stopping: reserving nothing more; running makes may finish");
    stop.abort();
    // populate cancels what still runs when the grace period ends; this only says so in the log.
    setTimeout(() => {
      state = "draining";
      logger.info({ state }, "grace period over: aborting running makes and releasing their leases");
    }, config.graceS * 1000).unref();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  logger.info(
    {
      state,
      pipeline: config.pipeline,
      tables: tables.map((t) => t.name),
      servers: [...new Set(tables.map((t) => t.connectOptions.url))],
      once: config.once,
      processes: config.processes,
      maxCalls: config.maxCalls,
      priority: config.priority,
      leaseDurationSeconds: config.leaseDurationS,
      graceSeconds: config.graceS,
      refreshIntervalSeconds: config.refreshIntervalS,
    },
    "start",
  );
  const outcome = await runPasses({
    tables,
    once: config.once,
    processes: config.processes,
    maxCalls: config.maxCalls,
    priority: config.priority,
    suppressErrors: config.suppressErrors,
    leaseDurationS: config.leaseDurationS,
    graceS: config.graceS,
    idleWaitS: config.idleWaitS,
    refreshIntervalS: config.refreshIntervalS,
    signal: stop.signal,
    logger,
  });
  const exitCode = outcome.kind === "failed" ? ExitCode.failed : ExitCode.ok;
  state = "stopped";
  logger.info({ state, reason: outcome.kind, successCount: outcome.successCount, errors: outcome.errors, exitCode }, "stop");
  // A make abandoned after the grace period may still hold the event loop;
  // its lease is released already, so end here. pino writes stdout synchronously.
  process.exit(exitCode);
}

main().catch((err: unknown) => fail(ExitCode.failed, errorLine(err)));
