/**
 * Key hash schemes in the store (key-codec.ts, KeyHashScheme): a table keeps the scheme it was
 * declared with, and a refresh whose keys were hashed for another scheme (a replica that did not
 * know the table yet, while one of an earlier version declared it) is hashed again as the table's.
 * Against the store itself, on each dialect; server-start.test.ts holds the upgrade from before
 * the schemes, through real servers.
 */
import test from "ava";
import { parseDatabaseUrl } from "../server/dist/config.js";
import { attributesOf, type EncodedKey, encodeCanonicalKeysJson, encodeKey, type KeyHashScheme } from "../server/dist/key-codec.js";
import { openStore } from "../server/dist/store/open-store.js";
import type { JobStore } from "../server/dist/store/store.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { idKey, refreshInput } from "./helpers/store-inputs.js";

const databases: TestDatabase[] = [];
const stores: JobStore[] = [];
test.after.always(async () => {
  for (const s of stores) await s.close();
  for (const db of databases) await db.drop();
});

const ATTRIBUTES = attributesOf(idKey(1), "test");
const encoded = (ids: number[], scheme: KeyHashScheme): EncodedKey[] => ids.map((id) => encodeKey(idKey(id), ATTRIBUTES, scheme, "test"));

const rehashesToTheTables = test.macro({
  title: (_, dialect: Dialect) => `${dialect}: a table keeps the key hash scheme it was declared with; keys hashed for another are hashed again as its own`,
  async exec(t, dialect: Dialect) {
    const db = await createTestDatabase(dialect);
    databases.push(db);
    const store = await openStore(parseDatabaseUrl(db.url), { maxLostAttempts: 3, poolSize: 4, poolWaitMs: 5000, cacheMib: 8 });
    stores.push(store);
    const now = Date.now();

    // Declared by a refresh whose keys are "sha256": the table records that scheme.
    t.is((await store.refresh(refreshInput("old_scheme", ATTRIBUTES, encoded([1, 2], "sha256"), "sha256", now))).added, 2);
    t.is((await store.describeTable("old_scheme"))?.keyHash, "sha256");
    // The same keys, and one more, hashed for a new table ("ordered"): found, not added twice.
    t.is((await store.refresh(refreshInput("old_scheme", ATTRIBUTES, encoded([1, 2, 3], "ordered"), "ordered", now + 1))).added, 1);
    t.is((await store.getProgress("old_scheme")).pending, 3);

    // A table declared with "ordered" keys records "ordered", and "sha256" keys sent to it later are hashed again.
    t.is((await store.refresh(refreshInput("new_scheme", ATTRIBUTES, encoded([1, 2], "ordered"), "ordered", now))).added, 2);
    t.is((await store.describeTable("new_scheme"))?.keyHash, "ordered");
    t.is((await store.refresh(refreshInput("new_scheme", ATTRIBUTES, encoded([2, 3], "sha256"), "sha256", now + 1))).added, 1);
    t.is((await store.getProgress("new_scheme")).pending, 3);
    // So are a column-form call's keys, which refresh hashes a batch at a time as it reads them.
    const columns = encodeCanonicalKeysJson('[{"id":"3"},{"id":"4"}]', ATTRIBUTES, "sha256", "test", 10);
    if (columns === undefined) throw new Error("the canonical keys_json was not read");
    t.is((await store.refresh(refreshInput("new_scheme", ATTRIBUTES, columns, "sha256", now + 2))).added, 1);
    t.is((await store.getProgress("new_scheme")).pending, 4);
  },
});

for (const dialect of testDialects()) test(rehashesToTheTables, dialect);
