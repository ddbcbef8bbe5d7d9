/**
 * The long-poll wake-ups of Reserve (server/src/service/work-notifier.ts): a
 * notification that comes while a Reserve is still looking for work (after
 * its mark, before its wait) wakes it at once instead of leaving it to the
 * fallback recheck. store-conformance's long-poll tests cover the same
 * through a real server; this pins the race that made them flaky under load.
 */
import test from "ava";
import { type ClaimChange, WorkNotifier } from "../server/dist/service/work-notifier.js";

const PENDING = Symbol("still waiting");
/** What `p` settled to within `ms`, or PENDING. */
const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<typeof PENDING>((r) => setTimeout(() => r(PENDING), ms))]);

/** An idle wait's answer to a claim change: look again now. */
const lookNow = () => 0;

/** A change feed that counts the waits that want it now. */
function countingFeed() {
  const feed = {
    wanted: 0,
    want() {
      feed.wanted++;
      return () => {
        feed.wanted--;
      };
    },
  };
  return feed;
}

/** A notifier whose fallback recheck never comes during a test. */
const notifier = () => new WorkNotifier(60_000);

test("a notification after the mark wakes the wait at once, even though it came before the wait began", async (t) => {
  const n = notifier();
  const seen = n.mark("A");
  n.notify("A"); // while the Reserve was still querying
  t.not(await within(n.wait("A", 60_000, new AbortController().signal, seen), 2000), PENDING);
});

test("notifyAll after the mark wakes a wait of any table", async (t) => {
  const n = notifier();
  const seen = n.mark("A");
  n.notifyAll();
  t.not(await within(n.wait("A", 60_000, new AbortController().signal, seen), 2000), PENDING);
});

test("a notification of another table, or one before the mark, does not wake the wait; one during it does", async (t) => {
  const n = notifier();
  n.notify("A");
  const seen = n.mark("A");
  n.notify("B");
  const waiting = n.wait("A", 60_000, new AbortController().signal, seen);
  t.is(await within(waiting, 200), PENDING);
  n.notify("A");
  t.not(await within(waiting, 2000), PENDING);
});

test("without a notification the wait ends at the recheck interval or when its signal aborts", async (t) => {
  const n = new WorkNotifier(50);
  t.not(await within(n.wait("A", 60_000, new AbortController().signal, n.mark("A")), 2000), PENDING);
  const slow = notifier();
  const abort = new AbortController();
  const waiting = slow.wait("A", 60_000, abort.signal, slow.mark("A"));
  t.is(await within(waiting, 100), PENDING);
  abort.abort();
  t.not(await within(waiting, 2000), PENDING);
});

test("a waiting Reserve wants the change feed, and is counted waiting, for exactly as long as it waits, however its wait ends", async (t) => {
  const feed = countingFeed();
  const n = new WorkNotifier(60_000, feed);
  const woken = n.wait("A", 60_000, new AbortController().signal, n.mark("A"));
  const aborted = new AbortController();
  const cut = n.wait("B", 60_000, aborted.signal, n.mark("B"));
  const timedOut = n.wait("C", 50, new AbortController().signal, n.mark("C"));
  t.is(feed.wanted, 3, "each waiting Reserve holds the feed");
  t.is(n.waiting, 3);
  await timedOut;
  t.is(feed.wanted, 2, "released at its deadline");
  t.is(n.waiting, 2);
  n.notify("A");
  await woken;
  aborted.abort();
  await cut;
  t.is(feed.wanted, 0, "released when woken and when its call ends");
  t.is(n.waiting, 0);
  const seen = n.mark("A");
  n.notify("A");
  await n.wait("A", 60_000, new AbortController().signal, seen);
  t.is(feed.wanted, 0, "a wait that returns at once never holds it");
  t.is(n.waiting, 0, "nor is counted");
});

test("an idle long-poll (waitIdle) waits its whole time with no recheck and without the change feed, is counted apart from Reserve's waits, and wakes on its table's notification or an abort", async (t) => {
  const feed = countingFeed();
  const n = new WorkNotifier(50, feed);
  const waiting = n.waitIdle("A", 60_000, new AbortController().signal, n.markIdle("A"), lookNow);
  t.is(await within(waiting, 300), PENDING, "no recheck after 50 ms: it waits its own time");
  t.deepEqual([n.idleWaiting, n.waiting, feed.wanted], [1, 0, 0], "counted as an idle wait; the feed is not read faster for it");
  n.notify("A");
  t.not(await within(waiting, 2000), PENDING);
  t.is(n.idleWaiting, 0);

  t.not(await within(n.waitIdle("A", 100, new AbortController().signal, n.markIdle("A"), lookNow), 2000), PENDING, "ends at its time");
  const seen = n.markIdle("A");
  n.notify("A");
  t.not(await within(n.waitIdle("A", 60_000, new AbortController().signal, seen, lookNow), 2000), PENDING, "notified since its mark: at once");
  const abort = new AbortController();
  const aborted = n.waitIdle("A", 60_000, abort.signal, n.markIdle("A"), lookNow);
  abort.abort();
  t.not(await within(aborted, 2000), PENDING);
  t.is(n.idleWaiting, 0);
});

test("a change of a table's refresh claim reaches only its idle long-polls: freed, they look again within a spread second; taken or finished, each waits as long as it reckons from the change, without a look; a Reserve marked before it does not look again, an idle wait does", async (t) => {
  const n = notifier();
  const heard: ClaimChange[] = [];
  const reckon = (ms: number | null) => (change: ClaimChange) => {
    heard.push(change);
    return ms;
  };
  const freed = n.waitIdle("A", 60_000, new AbortController().signal, n.markIdle("A"), reckon(null));
  const reserve = n.wait("A", 60_000, new AbortController().signal, n.mark("A"));
  const other = n.waitIdle("B", 60_000, new AbortController().signal, n.markIdle("B"), reckon(null));
  const reserveMark = n.mark("A");
  const idleMark = n.markIdle("A");
  n.claimChanged("A", { kind: "freed" });
  t.not(await within(freed, 2000), PENDING);
  t.deepEqual(heard, [{ kind: "freed" }]);
  t.is(await within(reserve, 200), PENDING, "no job came: the Reserve waits on");
  t.is(await within(other, 10), PENDING, "another table's wait goes on");
  t.is(await within(n.wait("A", 60_000, new AbortController().signal, reserveMark), 100), PENDING, "a Reserve that marked before the change waits");
  t.not(await within(n.waitIdle("A", 60_000, new AbortController().signal, idleMark, lookNow), 100), PENDING, "an idle wait that marked before it does not");

  // Taken: one wait reckons its next look far off, another soon.
  const later = n.waitIdle("A", 100, new AbortController().signal, n.markIdle("A"), reckon(60_000));
  const sooner = n.waitIdle("A", 60_000, new AbortController().signal, n.markIdle("A"), reckon(50));
  n.claimChanged("A", { kind: "taken" });
  t.not(await within(sooner, 2000), PENDING, "rescheduled to 50 ms");
  t.is(await within(later, 300), PENDING, "rescheduled past its own 100 ms");
  n.claimChanged("A", { kind: "finished", lastRefreshTime: 1234 });
  t.deepEqual(heard.slice(1), [{ kind: "taken" }, { kind: "taken" }, { kind: "finished", lastRefreshTime: 1234 }], "each waiter is told what changed");
  n.notify("A");
  n.notify("B");
  t.not(await within(Promise.all([reserve, other, later]), 2000), PENDING, "each woken by its own table's job");
  t.is(n.idleWaiting, 0);
});
