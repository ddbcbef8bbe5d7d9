/**
 * Confirming a destructive command as mature tools do: `--yes` skips the
 * question; otherwise a terminal is asked (on stderr, stdout staying clean)
 * and only "y" or "yes" goes on; without a terminal on stdin there is no one
 * to ask, so the command refuses (exit 2) rather than guess.
 */
import { createInterface } from "node:readline/promises";
import { ExitCode } from "../exit-codes.js";
import type { CliContext } from "./context.js";
import { CliError } from "./failure.js";

/** Resolves when the change may go ahead; throws CliError when it may not (nothing changed then). */
export async function confirm(ctx: CliContext, question: string, options: { readonly yes: boolean; readonly command: string }): Promise<void> {
  if (options.yes) return;
  if (ctx.streams.stdin.isTTY !== true) {
    throw new CliError(`${options.command} changes the store and stdin is not a terminal to confirm it on; add --yes`, ExitCode.usage);
  }
  const rl = createInterface({ input: ctx.streams.stdin, output: ctx.streams.stderr });
  // Ctrl-C or Ctrl-D at the question is a no: readline would otherwise pause or close the input and leave
  // the question pending, and the process would end with exit 0 having done nothing.
  let asking = true;
  const noAnswer = new Promise<string>((resolve) => {
    const no = () => {
      if (!asking) return;
      ctx.streams.stderr.write("\n"); // the cursor is still after the question
      resolve("");
    };
    rl.once("SIGINT", no);
    rl.once("close", no);
  });
  try {
    const answer = (await Promise.race([rl.question(`${question} [y/N] `), noAnswer])).trim().toLowerCase();
    if (answer !== "y" && answer !== "yes") throw new CliError("not confirmed; nothing changed", ExitCode.failed);
  } finally {
    asking = false;
    rl.close();
  }
}
