/**
 * Structured logs: pino JSON lines on stdout, one object per event (start,
 * each table of each pass, stop), as populus-server writes them.
 */
import { type Logger, pino } from "pino";

export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: { service: "populus-worker" },
      // A bearer token must never reach a log line.
      redact: ["*.authorization", "token"],
    },
    // Synchronous: main ends with process.exit right after the "stop" line,
    // which the default asynchronous destination lost (worker-cli.test.ts).
    pino.destination({ dest: 1, sync: true }),
  );
}
