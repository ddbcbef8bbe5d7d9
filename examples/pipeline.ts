/**
 * An example pipeline module: one computed table, ProcessedData, whose key
 * source is 300 recording sessions (30 subjects × 10 days) and whose make
 * takes a few milliseconds.
 *
 * This is how a pipeline module is written for `populate({ processes })`:
 * tables are defined at the top level and the module does nothing else when
 * imported, because every child process imports it to find its table by
 * name (running populate here would make each child run it again).
 */
import { connect, type MakeContext } from "@populus/sdk";

/** A key of ProcessedData. */
export interface SessionKey {
  readonly subject_id: number;
  readonly session: string;
}

/** The upstream data: 30 subjects, each recorded on 10 days of November 2026. */
function* sessions(): Generator<SessionKey> {
  for (let subject_id = 1; subject_id <= 30; subject_id++) {
    for (let day = 1; day <= 10; day++) yield { subject_id, session: `2026-11-${String(day).padStart(2, "0")}` };
  }
}

/** A stand-in for real work: the mean of a deterministic pseudo-random signal, computed in about 5 ms. */
async function compute(key: SessionKey, ctx: MakeContext<SessionKey>): Promise<number> {
  let seed = key.subject_id * 1000 + Number(key.session.slice(-2));
  let sum = 0;
  const samples = 1000;
  for (let i = 0; i < samples; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    sum += seed / 2 ** 31;
    if (i % 250 === 0) ctx.progress(i / samples);
  }
  await new Promise((r) => setTimeout(r, 5));
  return sum / samples;
}

/** The connection: POPULUS_URL, else http://127.0.0.1:50051. */
export const db = connect();

/** The computed table: one mean per session. */
export const ProcessedData = db.table<SessionKey>("ProcessedData", {
  keySource: () => sessions(),
  make: async (key, ctx) => ({ mean: await compute(key, ctx) }),
});
