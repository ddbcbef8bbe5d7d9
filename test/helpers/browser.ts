/**
 * A real headless Chromium for the console's tests and screenshots: Debian's `chromium`
 * (installed by .ci/run) driven by playwright-core, which downloads no browser of its own. Each
 * browser gets a fresh profile directory, removed when it closes, and records every error the
 * page's console or its scripts report, for the tests to assert that there are none.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

/** The browser binary: POPULUS_CHROMIUM, else Debian's. */
export const CHROMIUM = process.env.POPULUS_CHROMIUM ?? "/usr/bin/chromium";

/**
 * Without the background-networking, component-update and sync flags, Chromium's own
 * connections to its services are refused here and it stalls; QUIC is off for the same reason.
 */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface TestBrowser {
  readonly context: BrowserContext;
  /** Errors the pages logged to their console, and uncaught exceptions of their scripts, in order. */
  readonly problems: string[];
  /** A new tab (its own sessionStorage: a tab's token stays in it). */
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** Starts Chromium with a fresh profile; fails with the install command when it is missing. */
export async function launchBrowser(options: { viewport?: { width: number; height: number }; acceptAnyCertificate?: boolean } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set POPULUS_CHROMIUM)`);
  const profile = mkdtempSync(join(tmpdir(), "populus-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: options.viewport ?? { width: 1360, height: 900 },
    // For a server whose certificate a test made itself.
    ignoreHTTPSErrors: options.acceptAnyCertificate ?? false,
  });
  const problems: string[] = [];
  const watch = (page: Page) => {
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error: ${m.text()} (${m.location().url})`);
    });
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  };
  context.on("page", watch);
  for (const page of context.pages()) watch(page);
  return {
    context,
    problems,
    newPage: () => context.newPage(),
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
