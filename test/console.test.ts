/**
 * The web console in a real headless Chromium (test/helpers/browser.ts) against real
 * populus-server processes: it loads on the embedded SQLite default, its counts and event feed
 * move during a populate without a reload, a failing make's error shows with its stack, the
 * leases view names the worker that holds a job and make's progress, an admin action works while
 * a reader token is refused it, and a bad token, a server restart and a token demoted meanwhile
 * show as such while the page resumes by itself. No test may leave an error in the browser's
 * console (the one test that provokes refused requests names exactly which it allows).
 *
 * The pipelines run in this process through the SDK, with makes that wait on a gate the test
 * opens, so the page is looked at in a known state and no assertion depends on speed.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import type { Page } from "playwright-core";
import { connect } from "../client-sdk/dist/index.js";
import { launchBrowser, type TestBrowser } from "./helpers/browser.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

type IdKey = { id: number };
const ids = (n: number): IdKey[] => Array.from({ length: n }, (_, id) => ({ id }));

/** A promise the test resolves: makes wait on it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

/** Long enough for Chromium on a busy 2-core machine; every wait ends as soon as the page shows what it waits for. */
const UI_WAIT = { timeout: 20_000 };

let dir: string;
let server: ServerProcess;
let browser: TestBrowser;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), "populus-console-"));
  // No --database: the embedded default, populus.db in the working directory.
  server = await startServer({ database: undefined, cwd: dir });
  browser = await launchBrowser();
});

test.after.always(async (t) => {
  await browser?.close();
  if (server !== undefined) t.is(await server.stop(), 0, "server exits 0 on SIGTERM");
  rmSync(dir, { recursive: true, force: true });
});

/** The text of a table page's count card ("pending", "target", …). */
const card = (page: Page, name: string) => page.locator(`.card[data-count="${name}"] .card-value`);

test.serial("the console loads on the embedded SQLite default, with its files and whoami, and no tokens needed on loopback", async (t) => {
  const db = connect({ url: server.url });
  try {
    await db.table("Loaded", { keySource: ids(3), make: () => ({}) }).jobs.refresh();
  } finally {
    db.close();
  }
  t.true(
    server.logs.some((l) => l.includes('"dialect":"sqlite"')),
    "the server runs on SQLite",
  );

  const page = await browser.newPage();
  await page.goto(`${server.url}/`);
  await page.locator('[data-role="open"]').waitFor(UI_WAIT);
  t.is(await page.locator("header.top .badge").textContent(), "no tokens: open on this address");
  const row = page.locator('tr[data-table="loaded"]');
  await row.locator('[data-count="pending"]').getByText("3", { exact: true }).waitFor(UI_WAIT);
  await row.locator(".badge-live").waitFor(UI_WAIT);
  t.is(await row.locator("a").textContent(), "Loaded");
  await page.close();

  const index = await fetch(`${server.url}/`);
  t.is(index.status, 200);
  t.is(index.headers.get("content-type"), "text/html; charset=utf-8");
  t.regex(index.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  const script = await fetch(`${server.url}/console/console.js`);
  t.is(script.headers.get("content-type"), "text/javascript; charset=utf-8");
  const etag = script.headers.get("etag") ?? "";
  t.is((await fetch(`${server.url}/console/console.js`, { headers: { "if-none-match": etag } })).status, 304, "unchanged files revalidate as 304");
  const missing = await fetch(`${server.url}/console/nothing.js`);
  t.is(missing.status, 404);
  t.is(await missing.text(), "no console file nothing.js\n");
  t.is((await fetch(`${server.url}/console/console.js`, { method: "POST" })).status, 405);
  t.deepEqual(await (await fetch(`${server.url}/console/whoami`)).json(), { tokensRequired: false, role: "admin" });
  t.deepEqual(browser.problems, []);
});

test.serial("counts, progress and the event feed move during a populate, without a reload", async (t) => {
  const db = connect({ url: server.url });
  const held = gate();
  const Moving = db.table("Moving", {
    keySource: ids(30),
    make: async (key: IdKey) => {
      if (key.id >= 10) await held.opened;
      return { square: key.id * key.id };
    },
  });
  try {
    await Moving.jobs.refresh();
    const page = await browser.newPage();
    await page.goto(`${server.url}/#/table/moving/events`);
    await card(page, "pending").getByText("30", { exact: true }).waitFor(UI_WAIT);
    await card(page, "target").getByText("0", { exact: true }).waitFor(UI_WAIT);
    // Survives only as long as the document does: a reload would lose it.
    await page.evaluate("window.sameDocument = true");

    // A first populate computes keys 0-9.
    t.is((await Moving.populate({ reserveJobs: true, maxCalls: 10 })).successCount, 10);
    await card(page, "target").getByText("10", { exact: true }).waitFor(UI_WAIT);
    await card(page, "pending").getByText("20", { exact: true }).waitFor(UI_WAIT);
    await page.locator('tr[data-event="committed"]').nth(9).waitFor(UI_WAIT);
    t.is(await page.locator('tr[data-event="committed"]').count(), 10, "one committed event per key computed");
    t.true((await page.locator('tr[data-event="reserved"]').count()) >= 10, "the reservations are in the feed");
    t.is(await page.locator('.bar[role="progressbar"]').getAttribute("aria-valuenow"), "33.3");

    // A second one holds its first keys in make until the gate opens: they show as reserved.
    const run = Moving.populate({ reserveJobs: true });
    await card(page, "reserved")
      .getByText(/^[1-9]/)
      .waitFor(UI_WAIT);
    t.true(Number(await card(page, "pending").textContent()) < 20, "pending went down");
    held.open();
    const result = await run;
    t.is(result.successCount, 20);
    await card(page, "target").getByText("30", { exact: true }).waitFor(UI_WAIT);
    await card(page, "pending").getByText("0", { exact: true }).waitFor(UI_WAIT);
    await card(page, "reserved").getByText("0", { exact: true }).waitFor(UI_WAIT);
    await page.locator("[data-eta]").getByText("done", { exact: true }).waitFor(UI_WAIT);
    await page.locator('tr[data-event="committed"]').nth(29).waitFor(UI_WAIT);
    t.is(await page.locator('.bar[role="progressbar"]').getAttribute("aria-valuenow"), "100");
    t.true(await page.evaluate("window.sameDocument === true"), "the page was never reloaded");

    // The overview (a hash change, not a reload) follows the same counts.
    await page.click("a.back");
    const row = page.locator('tr[data-table="moving"]');
    await row.locator('[data-count="target"]').getByText("30", { exact: true }).waitFor(UI_WAIT);
    t.is(await row.locator(".eta").textContent(), "done");
    t.true(await page.evaluate("window.sameDocument === true"));
    await page.close();
  } finally {
    held.open();
    db.close();
  }
  t.deepEqual(browser.problems, []);
});

test.serial("jobs by status, a page at a time, with a key filter checked against the table's attributes", async (t) => {
  const db = connect({ url: server.url });
  try {
    await db.table("Paged", { keySource: ids(120), make: () => ({}) }).jobs.refresh();
  } finally {
    db.close();
  }
  const page = await browser.newPage();
  await page.goto(`${server.url}/#/table/paged/jobs`);
  const rows = page.locator("tr[data-job]");
  await rows.nth(49).waitFor(UI_WAIT);
  t.is(await rows.count(), 50);
  t.is(await rows.first().getAttribute("data-job"), "id=0", "in the reservation order");
  await page.getByRole("button", { name: "next →" }).click();
  await page.locator('tr[data-job="id=50"]').waitFor(UI_WAIT);
  t.is(await rows.count(), 50);
  await page.getByRole("button", { name: "next →" }).click();
  await page.locator('tr[data-job="id=100"]').waitFor(UI_WAIT);
  t.is(await rows.count(), 20);
  t.true(await page.getByRole("button", { name: "next →" }).isDisabled(), "the last page has no next");
  await page.getByRole("button", { name: "← previous" }).click();
  await page.locator('tr[data-job="id=50"]').waitFor(UI_WAIT);

  await page.fill('input[name="key-filter"]', "id=x");
  await page.press('input[name="key-filter"]', "Enter");
  t.is(await page.locator(".field-problem").textContent(), "id=x: id is an integer");
  await page.fill('input[name="key-filter"]', "size=3");
  await page.press('input[name="key-filter"]', "Enter");
  t.is(await page.locator(".field-problem").textContent(), '"size" is not a key attribute of this table (attributes: id)');
  await page.fill('input[name="key-filter"]', "id=77");
  await page.press('input[name="key-filter"]', "Enter");
  await page.locator(".field-problem").waitFor({ state: "detached", ...UI_WAIT });
  await page.locator('tr[data-job="id=50"]').waitFor({ state: "detached", ...UI_WAIT });
  t.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-job"))), ["id=77"]);
  t.is(await page.locator(".pager span").textContent(), "page 1", "a new filter starts at the first page");
  await page.getByRole("radio", { name: "error" }).click();
  await page.getByText("No error jobs match the filter.").waitFor(UI_WAIT);
  await page.close();
  t.deepEqual(browser.problems, []);
});

test.serial("a failing make's error shows with its message and full stack", async (t) => {
  const db = connect({ url: server.url });
  function explodeOnKeyThree(key: IdKey): never {
    throw new Error(`key ${key.id} is bad`);
  }
  const Failing = db.table("Failing", {
    keySource: ids(6),
    make: (key: IdKey) => (key.id === 3 ? explodeOnKeyThree(key) : { ok: true }),
  });
  try {
    const result = await Failing.populate({ reserveJobs: true, suppressErrors: true });
    t.is(result.errorList.length, 1);
    const page = await browser.newPage();
    await page.goto(`${server.url}/#/table/failing/errors`);
    const errorCard = page.locator('[data-error-key="id=3"]');
    await errorCard.waitFor(UI_WAIT);
    t.is(await errorCard.locator(".error-message").textContent(), "key 3 is bad");
    await errorCard.locator("summary").click();
    const stack = await errorCard.locator(".error-stack pre").textContent();
    t.regex(stack ?? "", /^Error: key 3 is bad\n\s+at explodeOnKeyThree /);
    t.regex(stack ?? "", /console\.test\.ts/);
    // The tab's count comes with the page's Watch snapshot, which may land after the error list.
    await page.locator(".tabs a.on", { hasText: "errors (1)" }).waitFor(UI_WAIT);
    t.is(await page.locator(".tabs a.on").textContent(), "errors (1)");
    await page.click("a.back");
    await page.locator('tr[data-table="failing"] [data-count="error"]').getByText("1", { exact: true }).waitFor(UI_WAIT);
    await page.close();
  } finally {
    db.close();
  }
  t.deepEqual(browser.problems, []);
});

test.serial("the leases view names the worker holding a job, since when, and make's own progress", async (t) => {
  const db = connect({ url: server.url });
  const held = gate();
  const reported = gate();
  const Held = db.table("Held", {
    keySource: ids(1),
    make: async (_key: IdKey, ctx) => {
      ctx.progress(0.5, "halfway there");
      reported.open();
      await held.opened;
      return {};
    },
  });
  try {
    // 3 s leases: the heartbeat, which carries the progress, goes every second.
    const run = Held.populate({ reserveJobs: true, leaseDuration: 3 });
    await reported.opened;
    for (let i = 0; i < 100 && (await Held.jobs.reserved.fetch())[0]?.progress !== 0.5; i++) await new Promise((r) => setTimeout(r, 100));
    const [job] = await Held.jobs.reserved.fetch();
    t.is(job?.progress, 0.5, "a heartbeat carried the progress");

    const page = await browser.newPage();
    await page.goto(`${server.url}/#/table/held/leases`);
    const row = page.locator('tr[data-lease="id=0"]');
    await row.waitFor(UI_WAIT);
    const cells = await row.locator("td").allTextContents();
    t.is(cells[1], hostname());
    t.is(cells[2], String(process.pid));
    t.is(cells[3], job?.workerId);
    t.regex(cells[4] ?? "", /^\d\d:\d\d:\d\d \(\d+ s ago\)$/);
    t.regex(cells[5] ?? "", /^in [0-3] s$|^expired$/);
    t.is(cells[7], "50% · halfway there");
    held.open();
    await run;
    await page.locator(".tabs a.on").getByText("leases (0)").waitFor(UI_WAIT);
    await page.close();
  } finally {
    held.open();
    db.close();
  }
  t.deepEqual(browser.problems, []);
});

test.serial(
  "with tokens: a bad token is refused, a reader is offered no admin action, an admin's works, and a restart that demotes the token is survived",
  async (t) => {
    const admin = "admin-token-0123456789abcdef";
    const reader = "reader-token-0123456789abcdef";
    const workerToken = "worker-token-0123456789abcdef";
    const tokensFile = join(dir, "tokens.txt");
    writeFileSync(tokensFile, `admin ${admin}\nreader ${reader}\n`);
    const database = `sqlite:${join(dir, "guarded.db")}`;
    let guarded = await startServer({ database, args: ["--tokens-file", tokensFile] });
    const own = await launchBrowser();
    // The reader gets a browser of its own: in one browser, the two tabs' live streams and their
    // reconnections after the restart share its six HTTP/1.1 connections to the server, and the
    // revoked tab's reconnection once waited past UI_WAIT behind the admin tab's streams.
    const readerBrowser = await launchBrowser();
    const db = connect({ url: guarded.url, token: admin });
    const guardedMake = (key: IdKey) => {
      if (key.id === 1 || key.id === 2) throw new Error(`no data for ${key.id}`);
      return { id2: key.id * 2 };
    };
    const Guarded = db.table("Guarded", { keySource: ids(8), make: guardedMake });
    try {
      await Guarded.populate({ reserveJobs: true, suppressErrors: true });
      t.deepEqual(await (await fetch(`${guarded.url}/console/whoami`, { headers: { authorization: `Bearer ${reader}` } })).json(), {
        tokensRequired: true,
        role: "reader",
      });

      // A bad token, then a reader's.
      const readerPage = await readerBrowser.newPage();
      await readerPage.goto(`${guarded.url}/#/table/guarded/actions`);
      await readerPage.fill('input[name="token"]', "not-a-token-of-this-server");
      await readerPage.click('button[type="submit"]');
      await readerPage.locator("[data-token-problem]").getByText("the bearer token is not valid on this server").waitFor(UI_WAIT);
      await readerPage.fill('input[name="token"]', reader);
      await readerPage.click('button[type="submit"]');
      await readerPage.locator('[data-role="reader"]').waitFor(UI_WAIT);
      const notice = readerPage.locator("[data-role-notice]");
      await notice.waitFor(UI_WAIT);
      t.is(await notice.textContent(), "Deleting errors, ignoring keys and deleting computed rows need an admin token; this token has the reader role.");
      t.is(await readerPage.locator("button[data-action]").count(), 0, "no admin action is offered to a reader");
      await readerPage.click('.tabs a[href$="/errors"]');
      await readerPage.locator('[data-error-key="id=1"]').waitFor(UI_WAIT);
      t.is(await readerPage.locator("button.small-button, button[data-action]").count(), 0);
      t.is(await readerPage.evaluate('sessionStorage.getItem("populus.console.token")'), reader, "the token is kept for the tab");
      t.is(await readerPage.evaluate("localStorage.length"), 0, "and nowhere that outlives it");

      // An admin, in a tab of its own: delete the errors, and the next refresh queues the keys again.
      const adminPage = await own.newPage();
      await adminPage.goto(`${guarded.url}/#/table/guarded/errors`);
      await adminPage.fill('input[name="token"]', admin);
      await adminPage.click('button[type="submit"]');
      await adminPage.locator('[data-error-key="id=2"]').waitFor(UI_WAIT);
      await adminPage.click('button[data-action="delete-errors"]');
      const dialog = adminPage.locator("dialog.confirm");
      t.is(await dialog.locator("h3").textContent(), "Delete 2 errors of guarded");
      await dialog.getByRole("button", { name: "Delete", exact: true }).click();
      await adminPage.locator('[data-outcome="ok"]').getByText("Deleted 2 error job(s).").waitFor(UI_WAIT);
      await card(adminPage, "error").getByText("0", { exact: true }).waitFor(UI_WAIT);
      // The list is read again after the action.
      await adminPage
        .locator("[data-error-key]")
        .first()
        .waitFor({ state: "detached", ...UI_WAIT });
      // The reader's page follows the same table live.
      await readerPage.locator(".tabs a.on").getByText("errors (0)").waitFor(UI_WAIT);
      t.deepEqual(await Guarded.jobs.errors.fetch(), []);
      t.is((await Guarded.jobs.refresh()).added, 2);
      await card(adminPage, "pending").getByText("2", { exact: true }).waitFor(UI_WAIT);

      // Ignore a key and delete a computed row from the Actions tab.
      await adminPage.click('.tabs a[href$="/actions"]');
      await adminPage.fill('textarea[name="ignore-keys"]', "id=oops");
      await adminPage.click('button[data-action="ignore"]');
      t.is(await adminPage.locator(".field-problem").textContent(), "line 1: id=oops: id is an integer");
      t.is(await adminPage.locator("dialog.confirm").count(), 0, "a key that does not fit is refused before any call");
      await adminPage.fill('textarea[name="ignore-keys"]', "id=1");
      await adminPage.click('button[data-action="ignore"]');
      await dialog.getByRole("button", { name: "Ignore", exact: true }).click();
      await adminPage.locator('[data-outcome="ok"]').getByText("Ignored 1 key(s).").waitFor(UI_WAIT);
      await card(adminPage, "ignore").getByText("1", { exact: true }).waitFor(UI_WAIT);
      await adminPage.fill('textarea[name="target-keys"]', "id=0\nid=4");
      await adminPage.click('button[data-action="delete-targets"]');
      t.is(await dialog.locator("h3").textContent(), "Delete 2 computed rows of guarded");
      await dialog.getByRole("button", { name: "Delete", exact: true }).click();
      await adminPage.locator('[data-outcome="ok"]').getByText("Deleted 2 computed row(s).").waitFor(UI_WAIT);
      await card(adminPage, "target").getByText("4", { exact: true }).waitFor(UI_WAIT);
      t.deepEqual(browser.problems, [], "the shared browser logged nothing");
      t.deepEqual([...own.problems, ...readerBrowser.problems], [], "nothing logged before the restart");

      // The server restarts on the same port and file, with the admin token demoted to reader and the reader token revoked.
      const port = guarded.port;
      t.is(await guarded.stop(), 0);
      await adminPage.locator('[data-banner="reconnecting"]').waitFor(UI_WAIT);
      t.regex(
        (await adminPage.locator('[data-banner="reconnecting"]').textContent()) ?? "",
        // SIGTERM ends the streams (UNAVAILABLE "shutting down", or an end); a retry while it is down finds nobody.
        /^Connection lost: (the server is shutting down or restarting|the server ended the stream \(it is shutting down or restarting\)|the server cannot be reached)\. Reconnecting by itself/,
      );
      writeFileSync(tokensFile, `reader ${admin}\nworker ${workerToken}\n`);
      guarded = await startServer({ database, args: ["--tokens-file", tokensFile, "--port", String(port)] });
      await adminPage.locator('[data-banner="resumed"]').waitFor(UI_WAIT);
      // The revoked token's tab asks for a token again, saying why.
      await readerPage.locator("[data-token-problem]").getByText("The server refused the token: the bearer token is not valid on this server").waitFor(UI_WAIT);
      t.is(await readerPage.evaluate('sessionStorage.getItem("populus.console.token")'), null, "the refused token is forgotten");
      // Resumed by cursor: work done after the restart reaches the same page. A worker token
      // recomputes the deleted rows (ids 0 and 4) and key 2 (which fails again); key 1 stays ignored.
      const worker = connect({ url: guarded.url, token: workerToken });
      try {
        const again = await worker.table("Guarded", { keySource: ids(8), make: guardedMake }).populate({ reserveJobs: true, suppressErrors: true });
        t.is(again.successCount, 2);
      } finally {
        worker.close();
      }
      await card(adminPage, "target").getByText("6", { exact: true }).waitFor(UI_WAIT);
      await card(adminPage, "error").getByText("1", { exact: true }).waitFor(UI_WAIT);
      const demoted = connect({ url: guarded.url, token: admin });
      try {
        await t.throwsAsync(demoted.table("Guarded", { keySource: [], make: () => ({}) }).jobs.errors.delete(), { message: /needs the admin role/ });
      } finally {
        demoted.close();
      }

      // The page still believes it is an admin's; the server refuses, and the page says so.
      await adminPage.fill('textarea[name="ignore-keys"]', "id=2");
      await adminPage.click('button[data-action="ignore"]');
      await dialog.getByRole("button", { name: "Ignore", exact: true }).click();
      const refused = adminPage.locator('[data-outcome="refused"]');
      await refused.waitFor(UI_WAIT);
      t.is(await refused.textContent(), "Ignore 1 key of guarded was refused (permission_denied): Ignore needs the admin role; this token has the reader role");
      await adminPage.locator('[data-role="reader"]').waitFor(UI_WAIT);
      await adminPage.locator("[data-role-notice]").waitFor(UI_WAIT);
      t.is(await adminPage.locator("button[data-action]").count(), 0, "the page no longer offers what the token may not do");
      // What the browser logged: the refused Ignore call (HTTP 403), the revoked token's calls (HTTP 401, as many as its tab
      // made before its stream heard of it), and connections refused while the server was down.
      const unexpected = [...own.problems, ...readerBrowser.problems].filter(
        (p) =>
          !/^console error: Failed to load resource: (the server responded with a status of (403 \(Forbidden\)|401 \(Unauthorized\))|net::ERR_CONNECTION_REFUSED) /.test(
            p,
          ),
      );
      t.deepEqual(unexpected, []);
      t.true(
        own.problems.some((p) => p.includes("status of 403")),
        "the refused call is the one logged",
      );
    } finally {
      db.close();
      await own.close();
      await readerBrowser.close();
      t.is(await guarded.stop(), 0);
    }
  },
);

test.serial("over plain HTTP the overview follows 4 tables live; over TLS (HTTP/2) it follows every one", async (t) => {
  // Six tables: more than a browser's six HTTP/1.1 connections could follow alongside the page's calls.
  const tables = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"];
  const seed = async (url: string) => {
    const db = connect({ url });
    try {
      for (const [i, name] of tables.entries()) await db.table(name, { keySource: ids(i + 1), make: () => ({}) }).jobs.refresh();
    } finally {
      db.close();
    }
  };
  const database = `sqlite:${join(dir, "many.db")}`;
  const plain = await startServer({ database });
  try {
    await seed(plain.url);
    const page = await browser.newPage();
    await page.goto(`${plain.url}/`);
    await page.locator('tr[data-table="delta"] .badge-live').waitFor(UI_WAIT);
    t.is(await page.locator("tr[data-table] .badge-live").count(), 4);
    t.deepEqual(await page.locator('tr[data-table="foxtrot"] [data-count="pending"]').textContent(), "6", "a row not followed shows its counts as loaded");
    t.is(await page.locator('tr[data-table="foxtrot"] .badge').textContent(), "as loaded");
    await page.close();
  } finally {
    t.is(await plain.stop(), 0);
  }

  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      "tls.key",
      "-out",
      "tls.pem",
    ],
    { cwd: dir, stdio: "ignore" },
  );
  const secure = await startServer({ database, args: ["--tls-cert", join(dir, "tls.pem"), "--tls-key", join(dir, "tls.key")] });
  const trusting = await launchBrowser({ acceptAnyCertificate: true });
  try {
    const page = await trusting.newPage();
    await page.goto(`https://127.0.0.1:${secure.port}/`);
    await page.locator('tr[data-table="foxtrot"] .badge-live').waitFor(UI_WAIT);
    t.is(await page.locator("tr[data-table] .badge-live").count(), 6);
    const protocols = await page.evaluate("[...new Set(performance.getEntriesByType('resource').map((e) => e.nextHopProtocol))]");
    t.deepEqual(protocols, ["h2"], "every request of the page went over HTTP/2");
    await page.close();
    t.deepEqual(trusting.problems, []);
  } finally {
    await trusting.close();
    t.is(await secure.stop(), 0);
  }
  t.deepEqual(browser.problems, []);
});

test.serial("a server killed mid-run shows as a lost connection; started again on the same file, the page resumes by cursor, missing nothing", async (t) => {
  const db = connect({ url: server.url });
  const own = await launchBrowser();
  try {
    const Resumed = db.table("Resumed", { keySource: ids(20), make: (key: IdKey) => ({ half: key.id / 2 }) });
    await Resumed.jobs.refresh();
    const page = await own.newPage();
    await page.goto(`${server.url}/#/table/resumed/events`);
    await card(page, "pending").getByText("20", { exact: true }).waitFor(UI_WAIT);
    t.is((await Resumed.populate({ reserveJobs: true, maxCalls: 5 })).successCount, 5);
    await page.locator('tr[data-event="committed"]').nth(4).waitFor(UI_WAIT);

    const port = server.port;
    await server.kill();
    const banner = page.locator('[data-banner="reconnecting"]');
    await banner.waitFor(UI_WAIT);
    t.regex((await banner.textContent()) ?? "", /^Connection lost: the server cannot be reached\. Reconnecting by itself \(attempt \d+\)/);
    server = await startServer({ database: undefined, cwd: dir, args: ["--port", String(port)] });
    await page.locator('[data-banner="resumed"]').waitFor(UI_WAIT);

    const rest = connect({ url: server.url });
    try {
      t.is(
        (await rest.table("Resumed", { keySource: ids(20), make: (key: IdKey) => ({ half: key.id / 2 }) }).populate({ reserveJobs: true })).successCount,
        15,
      );
    } finally {
      rest.close();
    }
    await card(page, "target").getByText("20", { exact: true }).waitFor(UI_WAIT);
    await page.locator('tr[data-event="committed"]').nth(19).waitFor(UI_WAIT);
    const committed = await page.locator('tr[data-event="committed"] td:nth-child(3)').allTextContents();
    t.deepEqual(
      committed.sort(),
      ids(20)
        .map((k) => `id=${k.id}`)
        .sort(),
      "every key's commit once: none missed, none repeated",
    );
    // The browser logs the Watch response the kill cut short, and the connections refused while the server was down.
    t.deepEqual(
      own.problems.filter((p) => !/^console error: Failed to load resource: net::(ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION_REFUSED) /.test(p)),
      [],
      "nothing else is logged",
    );
  } finally {
    db.close();
    await own.close();
  }
});
