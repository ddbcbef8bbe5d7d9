/**
 * `populate({ displayProgress })` against a real server on each dialect: the
 * plain lines on a stream that is not a TTY (direct mode in this process and
 * in child processes, reserveJobs with the server's counts), the bar on a
 * fake TTY, and the display ending cleanly when populate throws.
 *
 * Lines are drawn every 0.1 s here (`lineInterval`) so that a populate of
 * well under a second still shows lines while it runs.
 */
import test from "ava";
import { Writable } from "node:stream";
import { InvalidArgumentError, MakeError } from "../client-sdk/dist/index.js";
import { testDialects } from "./helpers/databases.js";
import { pipelinePerDialect } from "./helpers/pipeline-setup.js";

type Pipeline = typeof import("./fixtures/sdk-watch-pipeline.js");

const dialects = testDialects();
const setupOf = pipelinePerDialect<Pipeline>("sdk-watch-pipeline.ts");

/** A writable that keeps what is written; `isTTY`/`columns` as given. */
class Capture extends Writable {
  text = "";
  readonly isTTY: boolean;
  readonly columns: number | undefined;

  constructor(tty: { isTTY: boolean; columns?: number } = { isTTY: false }) {
    super();
    this.isTTY = tty.isTTY;
    this.columns = tty.columns;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

interface Line {
  readonly done: number;
  readonly total: number;
  readonly errors: number;
  readonly reserved: number;
  readonly rate: number;
}

const LINE = /^(\w+): (\d+)\/(\d+) done, (\d+) errors?, (\d+) reserved, [\d.]+ (?:s|min \d\d s), ([\d.]+) keys\/s$/;

/** The lines of a capture, parsed; fails the test on a line of another shape. */
function lines(capture: Capture, table: string): Line[] {
  const text = capture.text;
  if (!text.endsWith("\n")) throw new Error(`the output does not end with a newline: ${JSON.stringify(text)}`);
  return text
    .slice(0, -1)
    .split("\n")
    .map((l) => {
      const m = LINE.exec(l);
      if (m === null || m[1] !== table) throw new Error(`not a progress line of ${table}: ${JSON.stringify(l)}`);
      return { done: Number(m[2]), total: Number(m[3]), errors: Number(m[4]), reserved: Number(m[5]), rate: Number(m[6]) };
    });
}

const nonDecreasing = (ns: number[]) => ns.every((n, i) => i === 0 || n >= (ns[i - 1] ?? 0));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const dialect of dialects) {
  const setup = () => setupOf(dialect);

  test(`${dialect}: direct populate draws a line per interval and a last one at its total, then nothing more`, async (t) => {
    const { ShownDirect } = (await setup()).pipeline;
    const out = new Capture();
    t.deepEqual(await ShownDirect.populate({ displayProgress: { stream: out, lineInterval: 0.1 } }), { successCount: 30, errorList: [] });
    const drawn = lines(out, "ShownDirect");
    t.true(drawn.length >= 3, out.text);
    t.true(
      drawn.every((l) => l.total === 30 && l.errors === 0 && l.reserved <= 1),
      out.text,
    );
    t.true(nonDecreasing(drawn.map((l) => l.done)), out.text);
    t.true(
      drawn.some((l) => l.done > 0 && l.done < 30),
      `a line while it ran:\n${out.text}`,
    );
    t.like(drawn.at(-1), { done: 30, total: 30, errors: 0, reserved: 0 });
    t.true((drawn.at(-1)?.rate ?? 0) > 0);
    const length = out.text.length;
    await sleep(300);
    t.is(out.text.length, length, "the line timer stopped with populate");

    // Nothing left to compute: one line saying so.
    const again = new Capture();
    t.deepEqual(await ShownDirect.populate({ displayProgress: { stream: again, lineInterval: 0.1 } }), { successCount: 0, errorList: [] });
    t.like(lines(again, "ShownDirect").at(-1), { done: 0, total: 0, errors: 0, reserved: 0 });
  });

  test(`${dialect}: direct populate in 2 processes counts the children's makes as they run, errors included`, async (t) => {
    const { ShownChildren } = (await setup()).pipeline;
    const out = new Capture();
    const result = await ShownChildren.populate({ processes: 2, suppressErrors: true, displayProgress: { stream: out, lineInterval: 0.1 } });
    t.is(result.successCount, 36);
    t.is(result.errorList.length, 4);
    const drawn = lines(out, "ShownChildren");
    t.true(
      drawn.every((l) => l.total === 40 && l.reserved <= 2),
      out.text,
    );
    t.true(nonDecreasing(drawn.map((l) => l.done)), out.text);
    t.true(nonDecreasing(drawn.map((l) => l.errors)), out.text);
    t.true(
      drawn.some((l) => l.done > 0 && l.done < 40),
      `a line while the children ran:\n${out.text}`,
    );
    t.like(drawn.at(-1), { done: 40, total: 40, errors: 4, reserved: 0 });
  });

  test(`${dialect}: with reserveJobs the lines show the server's counts of the whole table, every process's work included`, async (t) => {
    const { ShownReserved } = (await setup()).pipeline;
    t.is((await ShownReserved.populate({ reserveJobs: true, maxCalls: 10 })).successCount, 10);
    const out = new Capture();
    t.deepEqual(await ShownReserved.populate({ reserveJobs: true, processes: 2, displayProgress: { stream: out, lineInterval: 0.1 } }), {
      successCount: 30,
      errorList: [],
    });
    const drawn = lines(out, "ShownReserved");
    // Keys computed before this populate count as done: it is the table's progress.
    t.like(drawn[0], { done: 10, total: 40 });
    t.true(
      drawn.every((l) => l.total === 40 && l.errors === 0),
      out.text,
    );
    t.true(nonDecreasing(drawn.map((l) => l.done)), out.text);
    t.true(
      drawn.some((l) => l.done > 10 && l.done < 40),
      `a line while the children ran:\n${out.text}`,
    );
    t.like(drawn.at(-1), { done: 40, total: 40, errors: 0, reserved: 0 });
    // The rate counts only this populate's 30 keys, not the 10 from before.
    const last = out.text.trimEnd().split("\n").at(-1) ?? "";
    const seconds = Number(/, ([\d.]+) s, /.exec(last)?.[1]);
    t.true(Math.abs((drawn.at(-1)?.rate ?? 0) - 30 / seconds) <= Math.max(1, (0.1 * 30) / seconds), last);
  });

  test(`${dialect}: on a TTY the bar is redrawn in place, fills up, and ends on its own line`, async (t) => {
    const { ShownTty } = (await setup()).pipeline;
    const tty = new Capture({ isTTY: true, columns: 120 });
    t.deepEqual(await ShownTty.populate({ reserveJobs: true, displayProgress: { stream: tty } }), { successCount: 30, errorList: [] });
    // Each redraw moves to column 1 (ESC[1G) and clears what is left of the old line (ESC[0K).
    const frames = tty.text
      .split("\x1b[1G")
      .slice(1)
      // biome-ignore lint/suspicious/noControlCharactersInRegex: a terminal's erase-line sequence starts with ESC.
      .map((f) => f.replace(/\x1b\[0K[\s\S]*$/, ""));
    t.true(frames.length >= 2, JSON.stringify(tty.text));
    t.regex(frames.at(-1) ?? "", /^ShownTty \|█{30}\| 100% 30\/30 done, 0 errors, 0 reserved, [\d.]+ s, [\d.]+ keys\/s$/);
    t.true(
      frames.some((f) => /^ShownTty \|█*░+\| \d+% ([12]?\d)\/30 done/.test(f)),
      `a frame of a partly filled bar:\n${frames.join("\n")}`,
    );
    t.true(frames.every((f) => f.length <= 120));
    // Line wrapping is restored and the cursor left on a new line.
    t.true(tty.text.lastIndexOf("\x1b[?7h") > tty.text.lastIndexOf("\x1b[?7l"));
    t.true(tty.text.endsWith("\n"));
    t.false(tty.text.includes("\x1b[?25l"), "the cursor is never hidden, so a crash cannot leave it hidden");
  });

  test(`${dialect}: a populate that throws still ends its display with a last line, and stops drawing`, async (t) => {
    const { ShownFailure } = (await setup()).pipeline;
    const out = new Capture();
    await t.throwsAsync(ShownFailure.populate({ displayProgress: { stream: out, lineInterval: 0.1 } }), { instanceOf: MakeError, message: "key 7 is bad" });
    const last = lines(out, "ShownFailure").at(-1);
    t.like(last, { total: 20, errors: 1, reserved: 0 });
    t.true((last?.done ?? 0) >= 1 && (last?.done ?? 0) < 20);
    const length = out.text.length;
    await sleep(300);
    t.is(out.text.length, length);
  });

  test(`${dialect}: a bad displayProgress.lineInterval is an InvalidArgumentError before any work`, async (t) => {
    const { ShownFailure } = (await setup()).pipeline;
    const out = new Capture();
    await t.throwsAsync(ShownFailure.populate({ displayProgress: { stream: out, lineInterval: 0 } }), {
      instanceOf: InvalidArgumentError,
      message: "ShownFailure.populate: displayProgress.lineInterval must be a number of seconds > 0, got 0",
    });
    t.is(out.text, "");
  });
}
