/**
 * What every command gets: the SDK client, the server's address for
 * messages, whether to print JSON, and the process's streams (a TTY or not
 * decides bars and confirmations).
 */
import type { PopulusClient } from "@populus/sdk";

/** The streams a command reads and writes. */
export interface CliStreams {
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  readonly stdin: NodeJS.ReadStream;
}

/** One run of a command. */
export interface CliContext {
  readonly db: PopulusClient;
  /** The server's URL, as messages name it. */
  readonly server: string;
  /** --json: stdout carries only the documented JSON. */
  readonly json: boolean;
  readonly streams: CliStreams;
}

/** Writes `text` and a newline to stdout. */
export function printLine(ctx: CliContext, text: string): void {
  ctx.streams.stdout.write(`${text}\n`);
}

/** Writes `value` to stdout as one JSON document (indented, for people reading it too). */
export function printJson(ctx: CliContext, value: unknown): void {
  ctx.streams.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes a note for people to stderr (never with --json, whose stderr carries only failures). */
export function note(ctx: CliContext, text: string): void {
  if (!ctx.json) ctx.streams.stderr.write(`populus: ${text}\n`);
}
