// @ts-check
/**
 * The bench's pipeline module: no-op tables Drain0 … Drain49 on the server at
 * BENCH_URL. `populate({ processes })` forks children that import this module
 * to find their table by name, so the tables are defined here, at the top
 * level, and a repetition takes the next unused one.
 *
 * Plain JavaScript, as a deployed pipeline is: the children start with plain
 * node (bench/dialect.ts drops tsx from their flags), so the drain figures do
 * not include a TypeScript loader's start-up in every worker process.
 */
import { connect } from "../client-sdk/dist/index.js";

const url = process.env.BENCH_URL;
if (url === undefined) throw new Error("bench/pipeline.js needs BENCH_URL");

export const db = connect({ url });

/** make calls of this process, for the exactly-once check. */
export const makeCalls = { count: 0 };

/** @typedef {{ id: number }} BenchKey */

export const tables = Array.from({ length: 50 }, (_, i) =>
  db.table(`Drain${i}`, {
    /** @type {BenchKey[]} */
    keySource: [],
    make: () => {
      makeCalls.count++;
      return {};
    },
  }),
);
