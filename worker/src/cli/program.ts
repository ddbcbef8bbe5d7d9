/**
 * populus's command line (commander): the global options (the connection
 * options shared with populus-worker, and --json), each command with its
 * arguments and options, and their help. Parsing only picks the command to
 * run; main.ts connects and runs it.
 */
import type { JobStatusName } from "@populus/sdk";
import { Command, InvalidArgumentError, Option } from "commander";
import { addConnectionOptions, type ConnectionFlags } from "../connection-config.js";
import { intInRange, secondsInRange } from "../option-values.js";
import type { CliContext } from "./context.js";
import { errorsCommand } from "./errors-command.js";
import { ignoreCommand } from "./ignore-command.js";
import { jobsCommand } from "./jobs-command.js";
import { refreshCommand } from "./refresh-command.js";
import { statusCommand } from "./status-command.js";
import { tablesCommand } from "./tables-command.js";

/** The global options. */
export interface GlobalFlags extends ConnectionFlags {
  readonly json?: boolean;
}

/** The command the arguments chose, ready to run once connected. */
export type CommandRun = (ctx: CliContext) => Promise<void>;

const STATUSES: readonly JobStatusName[] = ["pending", "reserved", "success", "error", "ignore"];

/** --status may be repeated or a comma list; each must be a status. */
function statusList(value: string, previous: JobStatusName[] | undefined): JobStatusName[] {
  const names = value.split(",").map((s) => s.trim());
  for (const n of names) {
    if (!(STATUSES as readonly string[]).includes(n)) throw new InvalidArgumentError(`"${n}" is not a job status; use ${STATUSES.join(", ")}`);
  }
  return [...new Set([...(previous ?? []), ...(names as JobStatusName[])])];
}

/** --key may be repeated (ignore). */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** The program; `chosen` receives the command to run when parsing picks one. */
export function buildProgram(chosen: (run: CommandRun) => void): Command {
  const program = new Command("populus")
    .description("Look at and manage a Populus server's tables and jobs, from a terminal or a script.")
    .helpOption("-h, --help", "show this help")
    .showSuggestionAfterError(true)
    .addHelpText(
      "after",
      "\nExit codes: 0 done; 1 the server could not be reached or failed, or a confirmation was declined; 2 bad usage, " +
        "an unknown table or a request the server refused as invalid; 3 the pipeline module could not be loaded (refresh); " +
        "4 the server refused the token (none, unknown, or a role too small).",
    );
  addConnectionOptions(program);
  program.addOption(new Option("--json", "print the documented JSON shapes on stdout instead of text"));
  program.addHelpCommand("help [command]", "show the help of a command");

  const command = (name: string, description: string) => program.command(name).description(description).allowExcessArguments(false);

  command("tables", "list the tables the server knows, with their key attributes and counts").action(() => chosen((ctx) => tablesCommand(ctx)));

  command("status", "the counts of a table, or of every table: a bar per table on a terminal, plain lines otherwise")
    .argument("[table]", "the table (as the pipeline names it, or as stored); default: every table")
    .option("--watch", "follow the server's Watch stream and redraw as the counts change, until Ctrl-C")
    .action((table: string | undefined, o: { watch?: boolean }) => chosen((ctx) => statusCommand(ctx, table, { watch: o.watch === true })));

  command("jobs", "list a table's jobs in reservation order (priority, scheduled time, id)")
    .argument("<table>", "the table")
    .addOption(
      new Option("--status <status>", `only jobs with this status (${STATUSES.join(", ")}); repeat or comma-separate for several`).argParser(statusList),
    )
    .option("--key <json>", `only jobs whose key has these attribute values, e.g. '{"subject_id":3}'`)
    .addOption(new Option("--priority <p>", "only jobs at this priority or more urgent (0-255)").argParser(intInRange("--priority", 0, 255)))
    .addOption(new Option("--limit <n>", "show at most this many jobs").default(100).argParser(intInRange("--limit", 1, 1_000_000)))
    .action((table: string, o: { status?: JobStatusName[]; key?: string; priority?: number; limit: number }) => chosen((ctx) => jobsCommand(ctx, table, o)));

  command("errors", "show a table's error jobs with their message and full stack; --delete deletes them")
    .argument("<table>", "the table")
    .option("--key <json>", `only error jobs whose key has these attribute values, e.g. '{"subject_id":3}'`)
    .addOption(new Option("--limit <n>", "show at most this many error jobs (default 100)").argParser(intInRange("--limit", 1, 1_000_000)))
    .option("--delete", "delete the error jobs (all, or those matching --key): the next refresh queues their keys again")
    .option("-y, --yes", "delete without asking (required when stdin is not a terminal)")
    .action((table: string, o: { key?: string; limit?: number; delete?: boolean; yes?: boolean }) =>
      chosen((ctx) => errorsCommand(ctx, table, { key: o.key, limit: o.limit, delete: o.delete === true, yes: o.yes === true })),
    );

  command("ignore", "mark keys to skip: their jobs are set to ignore (a reserved one loses its lease)")
    .argument("<table>", "the table")
    .addOption(new Option("--key <json>", `a whole key, e.g. '{"subject_id":3}'; repeat for several`).argParser(collect))
    .option("-y, --yes", "ignore without asking (required when stdin is not a terminal)")
    .action((table: string, o: { key?: string[]; yes?: boolean }) => chosen((ctx) => ignoreCommand(ctx, table, { key: o.key ?? [], yes: o.yes === true })));

  command("refresh", "sync tables' jobs with their key sources, which the pipeline module defines (needs a worker token)")
    .argument("[tables...]", "tables exported by the module (default: every one)")
    .addOption(new Option("--pipeline <module>", "the pipeline module, as populus-worker takes it").env("POPULUS_PIPELINE").makeOptionMandatory())
    .addOption(
      new Option("--priority <p>", "priority of the jobs added (0-255; default config.jobs.defaultPriority)").argParser(intInRange("--priority", 0, 255)),
    )
    .addOption(
      new Option("--orphan-timeout <seconds>", "reset reserved jobs leased longer ago than this").argParser(secondsInRange("--orphan-timeout", 0, 31_536_000)),
    )
    .addOption(
      new Option("--stale-timeout <seconds>", "remove jobs older than this whose key left the key source (default config.jobs.staleTimeout)").argParser(
        secondsInRange("--stale-timeout", 0, 31_536_000),
      ),
    )
    .addOption(new Option("--delay <seconds>", "the jobs added are not reserved before now + this").argParser(secondsInRange("--delay", 0, 31_536_000)))
    .action((tables: string[], o: { pipeline: string; priority?: number; orphanTimeout?: number; staleTimeout?: number; delay?: number }) =>
      chosen((ctx) => refreshCommand(ctx, tables, o)),
    );

  return program;
}
