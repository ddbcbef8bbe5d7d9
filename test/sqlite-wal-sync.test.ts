/**
 * wal-sync.ts: a write is answered only after an fdatasync of the WAL that began after its commit;
 * syncs asked for while one runs share the next one; a sync that fails rejects its callers and the
 * next one tries again. And the store: a large write transaction syncs, one that changed nothing
 * (a Reserve of an empty table) does not, nor does a small one (SQLite syncs it in its COMMIT).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { attributesOf, encodeKey } from "../server/dist/key-codec.js";
import { openSqliteStore } from "../server/dist/store/sqlite/sqlite-store.js";
import { WalSync } from "../server/dist/store/sqlite/wal-sync.js";
import { idKey, refreshInput } from "./helpers/store-inputs.js";

/** Counts FileHandle.datasync calls (each held until released) while `body` runs. */
async function withCountedDatasync<T>(body: (calls: { started: number; finished: number; release: () => void; hold: boolean }) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "populus-walsync-probe-"));
  const probe: FileHandle = await open(join(dir, "probe"), "w");
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  rmSync(dir, { recursive: true, force: true });
  const original = proto.datasync;
  const waiting: (() => void)[] = [];
  const calls = {
    started: 0,
    finished: 0,
    hold: false,
    release: () => {
      for (const w of waiting.splice(0)) w();
    },
  };
  proto.datasync = async function (this: FileHandle) {
    calls.started++;
    if (calls.hold) await new Promise<void>((resolve) => waiting.push(resolve));
    await original.call(this);
    calls.finished++;
  };
  try {
    return await body(calls);
  } finally {
    proto.datasync = original;
  }
}

test.serial("syncs asked for while one runs share the next one; each resolves only after a datasync that began after it was asked", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "populus-walsync-"));
  const wal = join(dir, "db-wal");
  writeFileSync(wal, "frames");
  const sync = new WalSync(wal);
  await withCountedDatasync(async (calls) => {
    calls.hold = true;
    const first = sync.sync();
    await new Promise((r) => setTimeout(r, 20));
    t.is(calls.started, 1, "the first sync started at once");
    let laterDone = 0;
    const later = [sync.sync(), sync.sync(), sync.sync()].map((p) => p.then(() => laterDone++));
    await new Promise((r) => setTimeout(r, 20));
    t.is(calls.started, 1, "no second datasync while the first runs");
    calls.release();
    await first;
    t.is(laterDone, 0, "the later ones wait for a datasync of their own, not the one running when they asked");
    await new Promise((r) => setTimeout(r, 20));
    t.is(calls.started, 2, "the three later ones share one datasync");
    calls.release();
    await Promise.all(later);
    t.is(calls.finished, 2);
    calls.hold = false;
    await sync.sync();
    t.is(calls.started, 3, "a sync asked for when none runs starts one at once");
  });
  await sync.close();
  rmSync(dir, { recursive: true, force: true });
});

test.serial("a sync that cannot open the WAL rejects its callers, and the next one tries again", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "populus-walsync-"));
  const wal = join(dir, "db-wal");
  const sync = new WalSync(wal);
  await t.throwsAsync(sync.sync(), { code: "ENOENT" });
  writeFileSync(wal, "frames");
  await t.notThrowsAsync(sync.sync());
  await sync.close();
  rmSync(dir, { recursive: true, force: true });
});

test.serial(
  "the store syncs a large transaction that wrote off the event loop; not one that changed nothing, nor a small one (synced in its COMMIT)",
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "populus-walsync-store-"));
    const store = await openSqliteStore(join(dir, "populus.db"), { maxLostAttempts: 3, cacheMib: 8 });
    const attributes = attributesOf(idKey(1), "test");
    const refresh = (ids: number[]) =>
      refreshInput(
        "Synced",
        attributes,
        ids.map((id) => encodeKey(idKey(id), attributes, "ordered", "test")),
        "ordered",
        Date.now(),
      );
    const worker = { workerId: "w", host: "h", pid: 1, user: "u", codeVersion: "" };
    const reserve = { table: "Synced", maxJobs: 100, maxPriority: null, restriction: [], worker, leaseMs: 60_000, requestId: null };
    try {
      await withCountedDatasync(async (calls) => {
        t.is((await store.refresh(refresh([1]))).added, 1);
        t.is(calls.started, 0, "a one-key refresh is small: SQLite synced it in its COMMIT");
        t.is((await store.refresh(refresh(Array.from({ length: 40 }, (_, i) => i + 2)))).added, 40);
        t.is(calls.finished, 1, "a refresh of 40 keys: one datasync, done before its answer");
        t.is((await store.reserve({ ...reserve, now: Date.now() })).length, 41);
        t.is(calls.finished, 2, "a Reserve of up to 100 jobs that leased some: one datasync, done before its answer");
        t.deepEqual(await store.reserve({ ...reserve, now: Date.now() }), []);
        t.is(calls.started, 2, "a Reserve that found nothing wrote nothing and synced nothing");
      });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
