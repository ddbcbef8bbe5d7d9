/**
 * The server narrows V8's heap growth (server/src/heap-growth.ts): the same
 * garbage over the same live set keeps a smaller heap, and a node flag given
 * at start-up wins over the server's setting.
 */
import test from "ava";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { HEAP_GROWING_PERCENT } from "../server/dist/heap-growth.js";

const PROBE = fileURLToPath(new URL("./fixtures/heap-growth-probe.mjs", import.meta.url));
const largestHeapMb = (nodeArgs: string[], mode: "limit" | "default") =>
  Number(execFileSync(process.execPath, [...nodeArgs, PROBE, mode], { encoding: "utf8" }).trim());

test(`the server's heap grows ${HEAP_GROWING_PERCENT}% past its live objects, not V8's up to 4x; node --heap-growing-percent wins`, (t) => {
  const v8Default = largestHeapMb([], "default");
  const limited = largestHeapMb([], "limit");
  const overridden = largestHeapMb(["--heap-growing-percent=0"], "limit");
  t.log(`largest heap: ${v8Default} MB by V8's default, ${limited} MB limited, ${overridden} MB with the node flag given`);
  t.true(limited < v8Default * 0.8, `${limited} MB limited against ${v8Default} MB`);
  t.true(overridden > limited * 1.25, `the flag given at start-up is left alone: ${overridden} MB against ${limited} MB`);
});
