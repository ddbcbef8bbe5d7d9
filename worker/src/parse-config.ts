/**
 * Running commander's parser the way both programs want it: no process.exit
 * from inside commander, help printed and answered as "exit 0", and any
 * parse error as a ConfigError of one line (commander writes several).
 */
import type { Command } from "commander";
import { ConfigError } from "./config-error.js";
import { ExitCode } from "./exit-codes.js";

/**
 * What parsing decided: go on, or exit now with this code: 0 after --help,
 * 2 when a command needs a subcommand and got none (`stderr` is the help to
 * print then).
 */
export type CommandLineOutcome = { readonly kind: "parsed" } | { readonly kind: "exit"; readonly code: number; readonly stderr: string };

/**
 * Parses `argv` (the user's arguments, without node and the script) with
 * `command` and its subcommands, whose option variables are read from `env`;
 * their actions run inside. A bad argument throws ConfigError.
 */
export function parseCommandLine(command: Command, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CommandLineOutcome {
  let errorText = "";
  const configure = (c: Command) => {
    c.exitOverride().configureOutput({
      writeErr: (text) => {
        errorText += text;
      },
    });
    for (const sub of c.commands) configure(sub);
  };
  configure(command);
  const savedEnv = process.env;
  try {
    // commander reads option env vars from process.env; let callers pass their own.
    process.env = env;
    command.parse([...argv], { from: "user" });
    return { kind: "parsed" };
  } catch (err) {
    const e = err as { code?: string; message?: string; exitCode?: number };
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return { kind: "exit", code: ExitCode.ok, stderr: "" };
    // `help`, or (exitCode 1) a program of subcommands called without one: its help, then as an error.
    if (e.code === "commander.help")
      return e.exitCode === 0 ? { kind: "exit", code: ExitCode.ok, stderr: "" } : { kind: "exit", code: ExitCode.usage, stderr: errorText };
    const line = errorText
      .trim()
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .join(" ");
    throw new ConfigError((line || e.message || "bad arguments").replace(/^error: /, ""));
  } finally {
    process.env = savedEnv;
  }
}
