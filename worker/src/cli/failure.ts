/**
 * How a failed command ends: one line on stderr and an exit code
 * (exit-codes.ts), decided here for every error a command can meet.
 */
import { InvalidArgumentError, PermissionDeniedError, PopulusError, TableNotFoundError, UnauthenticatedError, UnavailableError } from "@populus/sdk";
import { ConfigError } from "../config-error.js";
import { errorLine } from "../error-line.js";
import { ExitCode, type ExitCodeValue } from "../exit-codes.js";
import { PipelineLoadError } from "../pipeline-module.js";

/** A failure a command detected itself, with the exit code it ends with. */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly exitCode: ExitCodeValue;

  /** `message` is the line printed after "populus: ". */
  constructor(message: string, exitCode: ExitCodeValue) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** The line and exit code of `err`; `server` names the server in the lines that are about reaching it. */
export function failureOf(err: unknown, server: string): { readonly exitCode: ExitCodeValue; readonly line: string } {
  if (err instanceof CliError) return { exitCode: err.exitCode, line: err.message };
  if (err instanceof ConfigError) return { exitCode: ExitCode.usage, line: err.message };
  if (err instanceof PipelineLoadError) return { exitCode: ExitCode.pipeline, line: err.message };
  // The SDK's errors carry the server's message, which names the RPC and the fix.
  if (err instanceof UnauthenticatedError) {
    return { exitCode: ExitCode.refused, line: `${server} refused the call: ${err.message} (give --token-file, or POPULUS_TOKEN)` };
  }
  if (err instanceof PermissionDeniedError) return { exitCode: ExitCode.refused, line: `${server} refused the call: ${err.message}` };
  if (err instanceof TableNotFoundError || err instanceof InvalidArgumentError) return { exitCode: ExitCode.usage, line: err.message };
  if (err instanceof UnavailableError) return { exitCode: ExitCode.failed, line: `cannot reach ${server}: ${err.message}` };
  if (err instanceof PopulusError) return { exitCode: ExitCode.failed, line: `${server} failed: ${err.message}` };
  return { exitCode: ExitCode.failed, line: errorLine(err) };
}
