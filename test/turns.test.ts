/**
 * TurnsPerKey (server/src/store/turns.ts): the MySQL store's Reserves of one table take turns
 * within a replica. One task at a time per key, in call order; other keys run alongside; a
 * failing task does not hold up the next.
 */
import test from "ava";
import { TurnsPerKey } from "../server/dist/store/turns.js";

const tick = () => new Promise((r) => setTimeout(r, 5));

test("tasks of one key run one at a time, in call order; another key runs alongside", async (t) => {
  const turns = new TurnsPerKey();
  const log: string[] = [];
  let runningA = 0;
  let most = 0;
  const taskA = (name: string) => async () => {
    runningA++;
    most = Math.max(most, runningA);
    log.push(`${name} start`);
    await tick();
    log.push(`${name} end`);
    runningA--;
    return name;
  };
  const other = turns.run("B", async () => {
    log.push("b start");
    await tick();
    log.push("b end");
    return "b";
  });
  const results = await Promise.all([turns.run("A", taskA("a1")), turns.run("A", taskA("a2")), turns.run("A", taskA("a3")), other]);
  t.deepEqual(results, ["a1", "a2", "a3", "b"]);
  t.is(most, 1, "never two tasks of A at once");
  t.deepEqual(
    log.filter((l) => l.startsWith("a")),
    ["a1 start", "a1 end", "a2 start", "a2 end", "a3 start", "a3 end"],
  );
  t.true(log.indexOf("b start") < log.indexOf("a1 end"), "B did not wait for A");
  t.is(turns.busyKeys, 0, "nothing kept once every task settled");
});

test("a failing task rejects its own call only; the next task of the key runs", async (t) => {
  const turns = new TurnsPerKey();
  const failing = turns.run("A", async () => {
    await tick();
    throw new Error("lock wait timeout");
  });
  const next = turns.run("A", async () => "ran");
  await t.throwsAsync(failing, { message: "lock wait timeout" });
  t.is(await next, "ran");
  t.is(turns.busyKeys, 0);
});
