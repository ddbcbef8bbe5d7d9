/**
 * Whether the database answers, as health reports it: NOT_SERVING while it does not, so that a
 * load balancer sends clients to a replica that can serve them and an operator's probe sees the
 * outage, and SERVING again as soon as it answers, with no restart. The store is pinged every
 * second, and at once when a call failed because the database was unreachable: the ping alone
 * decides, so an error that only looks like an outage (SQLITE_BUSY) cannot flip health.
 */
import type { Logger } from "pino";
import { isDatabaseUnavailable } from "../errors.js";
import type { JobStore } from "../store/store.js";
import type { HealthState } from "./health.js";

/** How often the database is pinged (ms). */
const PROBE_EVERY_MS = 1000;
/**
 * A ping that has not answered by then counts as unreachable: a database that stops answering
 * without closing its connections (a network partition) must not hold health at SERVING.
 */
const PROBE_TIMEOUT_MS = 5000;

export class DatabaseProbe {
  private reachable = true;
  private probing = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Pick<JobStore, "ping">,
    private readonly health: HealthState,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.probe(), PROBE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Called with an error a call failed with: one that says the database is unreachable pings it now. */
  observe(err: unknown): void {
    if (isDatabaseUnavailable(err)) void this.probe();
  }

  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer to a ping within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
      });
      await Promise.race([this.store.ping(), timeout]);
      this.set(true);
    } catch (err) {
      this.set(false, err);
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
  }

  private set(reachable: boolean, err?: unknown): void {
    if (reachable === this.reachable) return;
    this.reachable = reachable;
    this.health.setDatabaseReachable(reachable);
    if (reachable) this.logger.info("database answers again: health SERVING");
    else this.logger.warn({ err }, "database unreachable: health NOT_SERVING until it answers");
  }
}
