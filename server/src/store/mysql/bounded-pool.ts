/**
 * A bounded wait for a pooled connection. mysql2's pool queues a caller that finds every
 * connection busy until one is released, with no time limit; so when the database stalls (a
 * long lock wait, a slow disk), every call that arrives meanwhile waits with it and the queue
 * grows in memory without bound. Here a caller waits at most `waitMs` and is then answered
 * DatabaseBusyError (UNAVAILABLE: clients retry), and at most `queueLimit` callers wait at once
 * (mysql2's own limit; the next one is answered at once).
 */
import { DatabaseBusyError } from "../../errors.js";

type Callback = (err: Error | null, connection?: { release(): void }) => void;

/** The part of mysql2's callback Pool this needs. */
export interface CallbackPool {
  getConnection(callback: Callback): void;
}

/** mysql2's error when `queueLimit` callers already wait. */
const QUEUE_FULL = "Queue limit reached.";

export function boundPoolWaits(pool: CallbackPool, o: { poolSize: number; waitMs: number; queueLimit: number }): void {
  const getConnection = pool.getConnection.bind(pool);
  pool.getConnection = (callback) => {
    let answered = false;
    const timer = setTimeout(() => {
      answered = true;
      callback(new DatabaseBusyError(`all ${o.poolSize} database connections stayed busy for ${o.waitMs / 1000} s; retry shortly`));
    }, o.waitMs);
    getConnection((err, connection) => {
      if (answered) {
        // The caller gave up: the connection it was queued for goes straight back to the pool.
        connection?.release();
        return;
      }
      answered = true;
      clearTimeout(timer);
      if (err?.message === QUEUE_FULL) {
        callback(new DatabaseBusyError(`all ${o.poolSize} database connections are busy and ${o.queueLimit} calls already wait for one; retry shortly`));
      } else callback(err, connection);
    });
  };
}
