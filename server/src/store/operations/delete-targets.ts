/**
 * DeleteTargets: an operator deletes computed rows (a refresh then re-pends their kept success jobs).
 */
import { Change } from "../change-log.js";
import type { EncodedKey } from "../../key-codec.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { KEY_CHUNK, type Operation, run, sql } from "./operation.js";
import { refreshDueNow } from "./refresh-claims.js";

/** Deletes target rows, of these keys or all; the next refresh recomputes them, interval or not. */
export function* deleteTargets(d: SqlDialect, table: string, keys: readonly EncodedKey[] | "all"): Operation<number> {
  const target = d.targetTable(table);
  let deleted = 0;
  if (keys === "all") deleted = yield* run(sql(`DELETE FROM ${target}`));
  else {
    for (let i = 0; i < keys.length; i += KEY_CHUNK) {
      const hashes = keys.slice(i, i + KEY_CHUNK).map((k) => k.hash);
      deleted += yield* run(d.perKey((match) => `DELETE FROM ${target} WHERE ${match}`, hashes));
    }
  }
  yield* logChange(d, table, new Change().move("target", null, deleted), Date.now());
  if (deleted > 0) yield* refreshDueNow(d, table);
  return deleted;
}
