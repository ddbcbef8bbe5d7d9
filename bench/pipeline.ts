/**
 * The bench's pipeline module: no-op tables Drain0 … Drain49 on the server at
 * BENCH_URL. `populate({ processes })` forks children that import this module
 * to find their table by name, so the tables are defined here, at the top
 * level, and a repetition takes the next unused one.
 */
import { connect } from "../client-sdk/dist/index.js";

const url = process.env.BENCH_URL;
if (url === undefined) throw new Error("bench/pipeline.ts needs BENCH_URL");

export const db = connect({ url });

export type BenchKey = { id: number };

/** make calls of this process, for the exactly-once check. */
export const makeCalls = { count: 0 };

export const tables = Array.from({ length: 50 }, (_, i) =>
  db.table<BenchKey>(`Drain${i}`, {
    keySource: [],
    make: () => {
      makeCalls.count++;
      return {};
    },
  }),
);
