/**
 * Structured logs: pino JSON lines on stdout, one object per event.
 */
import { pino, type Logger } from "pino";

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: "populus-server" },
    // Bearer tokens must never reach a log line (requests carry them in the authorization header).
    redact: ["req.headers.authorization", "*.authorization", "token"],
  });
}
