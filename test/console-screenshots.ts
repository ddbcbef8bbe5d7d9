/**
 * `npm run screenshots`: the README's pictures of the web console (docs/console-*.png), taken
 * in the same headless Chromium as test/console.test.ts. It starts a populus-server on a
 * temporary SQLite file, runs a small pipeline through the SDK in this process (one table done,
 * one failing for some keys, one in progress at a steady pace with makes that report their
 * progress), lets the console watch it for about a minute so the jobs/s chart has bars, and
 * photographs each view.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { connect } from "../client-sdk/dist/index.js";
import { launchBrowser } from "./helpers/browser.js";
import { startServer } from "./helpers/server-process.js";

const OUT = fileURLToPath(new URL("../docs/", import.meta.url));
/** How long the console watches the run before the first picture (s): the chart's bars are 10 s each. */
const WATCH_SECONDS = Number(process.env.SCREENSHOT_WATCH_SECONDS ?? 70);

type Session = { subject_id: number; session: string };
const sessions = (subjects: number, perSubject: number): Session[] =>
  Array.from({ length: subjects * perSubject }, (_, i) => ({
    subject_id: 100 + Math.floor(i / perSubject),
    session: `2026-11-${String(1 + (i % perSubject)).padStart(2, "0")}`,
  }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function loadCalibration(key: Session): never {
  throw new RangeError(`calibration file for subject ${key.subject_id}, session ${key.session} has 0 channels (expected 384)`);
}

const dir = mkdtempSync(join(tmpdir(), "populus-screenshots-"));
const server = await startServer({ database: `sqlite:${join(dir, "populus.db")}` });
const db = connect({ url: server.url });
const browser = await launchBrowser({ viewport: { width: 1360, height: 860 } });
const stop = new AbortController();
try {
  const Recording = db.table("Recording", { keySource: sessions(12, 10), make: (k: Session) => ({ channels: 384, subject: k.subject_id }) });
  const SpikeSorting = db.table("SpikeSorting", {
    keySource: sessions(12, 10),
    make: (k: Session) => (k.session === "2026-11-07" && k.subject_id % 3 === 0 ? loadCalibration(k) : { units: 40 + (k.subject_id % 17) }),
  });
  const Features = db.table("Features", {
    keySource: sessions(40, 30),
    make: async (k: Session, ctx) => {
      for (let step = 1; step <= 8; step++) {
        await sleep(250 + (k.subject_id % 5) * 30);
        ctx.progress(step / 8, `window ${step} of 8`);
      }
      return { mean: k.subject_id / 7 };
    },
  });
  await Recording.populate({ reserveJobs: true });
  await SpikeSorting.populate({ reserveJobs: true, suppressErrors: true });
  await Features.jobs.refresh();
  await db.table("Behavior", { keySource: sessions(12, 10), make: () => ({}) }).jobs.refresh();

  const page = await browser.newPage();
  await page.goto(`${server.url}/`);
  await page.locator('tr[data-table="features"] .badge-live').waitFor();
  // Four in-process workers at once, each holding a job at a time: a steady pace to chart, leases with progress.
  const runs = Array.from({ length: 4 }, () =>
    Features.populate({ reserveJobs: true, leaseDuration: 3, signal: stop.signal, grace: 0 }).catch(() => undefined),
  );
  process.stdout.write(`watching the run for ${WATCH_SECONDS} s…\n`);
  await sleep(WATCH_SECONDS * 1000);

  mkdirSync(OUT, { recursive: true });
  const shoot = async (p: Page, name: string, height: number) => {
    await p.setViewportSize({ width: 1360, height });
    await p.screenshot({ path: join(OUT, `console-${name}.png`), fullPage: false });
    process.stdout.write(`docs/console-${name}.png\n`);
  };
  await shoot(page, "overview", 400);

  // Hash changes, as clicks make them: the tab keeps the history its overview gathered.
  await page.goto(`${server.url}/#/table/features/events`);
  await page.locator('tr[data-event="committed"]').nth(20).waitFor();
  await sleep(2500);
  await shoot(page, "table", 720);

  await page.goto(`${server.url}/#/table/features/leases`);
  await page.locator("tr[data-lease]").first().waitFor();
  // Progress arrives with heartbeats (every second with 3 s leases), which are no Watch event: read the leases again
  // until a few makes under way have reported (each worker also holds its next job, not started yet).
  for (let i = 0; i < 20; i++) {
    await page.click("text=Reload");
    await sleep(400);
    const shown = await page.locator(".lease-progress span").allTextContents();
    if (shown.filter((text) => !text.startsWith("0%")).length >= 3) break;
  }
  await shoot(page, "leases", 640);

  await page.goto(`${server.url}/#/table/spike_sorting/errors`);
  await page.locator("[data-error-key]").first().locator("summary").click();
  await shoot(page, "errors", 720);

  await page.goto(`${server.url}/#/table/spike_sorting/actions`);
  await page.click('button[data-action="delete-errors"]');
  await page.locator("dialog.confirm").waitFor();
  await shoot(page, "confirm", 560);

  stop.abort();
  await Promise.all(runs);
  if (browser.problems.length > 0) throw new Error(`the browser logged errors:\n${browser.problems.join("\n")}`);
} finally {
  stop.abort();
  await browser.close();
  db.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
