#!/usr/bin/env node
/**
 * populus: the operators' command line of Populus (README, "The populus
 * CLI"). Wiring only: parse the arguments (program.ts), connect with the
 * connection options populus-worker takes, run the command, and end with one
 * line on stderr and an exit code (exit-codes.ts) when it fails
 * (failure.ts).
 *
 * The process ends by itself rather than by process.exit, which would cut
 * off what is still buffered for a pipe (`populus jobs T --json | jq`): the
 * SDK's idle connections do not hold it open.
 */
import { connect, type PopulusClient } from "@populus/sdk";
import { connectionSettings, exportConnectSettings } from "../connection-config.js";
import { errorLine } from "../error-line.js";
import { ExitCode } from "../exit-codes.js";
import { parseCommandLine } from "../parse-config.js";
import { failureOf } from "./failure.js";
import { buildProgram, type CommandRun, type GlobalFlags } from "./program.js";

function fail(exitCode: number, line: string): void {
  process.stderr.write(`populus: ${line}\n`);
  process.exitCode = exitCode;
}

// `populus jobs T | head -1`: the reader went away, so there is no one left to write to; end quietly, as
// a command killed by SIGPIPE would, instead of with an EPIPE stack.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(ExitCode.ok);
  throw err;
});

async function main(): Promise<void> {
  let run: CommandRun | undefined;
  const program = buildProgram((r) => {
    run = r;
  });
  let server = "the server";
  let db: PopulusClient | undefined;
  try {
    const outcome = parseCommandLine(program, process.argv.slice(2));
    if (outcome.kind === "exit") {
      process.stderr.write(outcome.stderr);
      process.exitCode = outcome.code;
      return;
    }
    if (run === undefined) return;
    const flags = program.opts<GlobalFlags>();
    // The settings become POPULUS_URL/POPULUS_TOKEN/POPULUS_CA_FILE: for connect() here, and for a pipeline module's (refresh).
    exportConnectSettings(connectionSettings(flags));
    db = connect();
    server = db.options.url;
    await run({ db, server, json: flags.json === true, streams: { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin } });
  } catch (err) {
    const { exitCode, line } = failureOf(err, server);
    fail(exitCode, line);
  } finally {
    db?.close();
  }
}

main().catch((err: unknown) => fail(ExitCode.failed, errorLine(err)));
