/**
 * Domain errors and their one mapping to gRPC status codes.
 *
 * Handlers and the store throw the classes below; `toConnectError` is the only
 * place that builds a ConnectError. Driver errors (mysql2, better-sqlite3) are
 * never shown to clients: they become UNAVAILABLE when the database cannot be
 * reached, and INTERNAL (logged with the RPC name and cause) otherwise.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { LeaseLostDetailSchema } from "@populus/sdk/gen/populus/v1/types_pb.js";
import type { Logger } from "pino";

/** A request that is malformed or does not fit the table: INVALID_ARGUMENT. */
export class InvalidRequestError extends Error {
  override readonly name: string = "InvalidRequestError";
}

/** A key whose attributes or types differ from the table's: INVALID_ARGUMENT. */
export class InvalidKeyError extends InvalidRequestError {
  override readonly name = "InvalidKeyError";
}

/** A table that was never declared by a refresh: NOT_FOUND. */
export class TableNotFoundError extends Error {
  override readonly name = "TableNotFoundError";
  constructor(readonly table: string) {
    super(`table "${table}" does not exist; a refresh declares a table and fixes its key attributes`);
  }
}

/** A health check for a service this server does not report: NOT_FOUND (the health protocol's own code). */
export class ServiceNotFoundError extends Error {
  override readonly name = "ServiceNotFoundError";
}

/** Leases that are no longer held by the caller: FAILED_PRECONDITION. */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  constructor(readonly leaseTokens: readonly string[]) {
    const shown = leaseTokens.slice(0, 5).join(", ") + (leaseTokens.length > 5 ? `, and ${leaseTokens.length - 5} more` : "");
    super(
      `${leaseTokens.length === 1 ? "lease" : `${leaseTokens.length} leases`} no longer held (expired and reassigned, released or deleted): ${shown}; nothing was written`,
    );
  }
}

/** A batch or value above a limit: RESOURCE_EXHAUSTED. */
export class LimitExceededError extends Error {
  override readonly name = "LimitExceededError";
}

/** The database cannot be reached or timed out: UNAVAILABLE (safe to retry). */
export class DatabaseUnavailableError extends Error {
  override readonly name = "DatabaseUnavailableError";
}

/**
 * Every pooled database connection stayed busy for the pool's wait, or too many calls already
 * wait for one: UNAVAILABLE, so clients retry (the database itself answers; health stays SERVING).
 */
export class DatabaseBusyError extends Error {
  override readonly name = "DatabaseBusyError";
}

/** A deadlock or lock wait that persisted through the store's retries: ABORTED. */
export class ContentionError extends Error {
  override readonly name = "ContentionError";
}

/** A Watch cursor whose events were already pruned: OUT_OF_RANGE. */
export class CursorExpiredError extends Error {
  override readonly name = "CursorExpiredError";
}

/** mysql2 and Node network error codes that mean "the database is not there". */
const UNAVAILABLE_DRIVER_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EPIPE",
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "ER_CON_COUNT_ERROR",
  "ER_SERVER_SHUTDOWN",
  "ER_QUERY_INTERRUPTED",
]);

/**
 * SQLite's answers that pass when asked again: busy past the busy timeout, and the extended codes
 * of it that better-sqlite3 reports (SQLITE_BUSY_RECOVERY while another process recovers the WAL
 * after it was killed mid-commit, SQLITE_BUSY_SNAPSHOT), and SQLITE_PROTOCOL, a race of the WAL's
 * locks that SQLite says to retry.
 */
function isTransientSqliteCode(code: string): boolean {
  return code === "SQLITE_BUSY" || code.startsWith("SQLITE_BUSY_") || code === "SQLITE_PROTOCOL";
}

/** True when a driver error says the database is unreachable or busy beyond its timeout. */
export function isUnavailableDriverError(err: unknown): boolean {
  const code = driverCode(err);
  return code !== undefined && (UNAVAILABLE_DRIVER_CODES.has(code) || isTransientSqliteCode(code));
}

/** An error that says the database cannot be reached or used now: UNAVAILABLE. */
export function isDatabaseUnavailable(err: unknown): boolean {
  return err instanceof DatabaseUnavailableError || isUnavailableDriverError(err);
}

function driverCode(err: unknown): string | undefined {
  let e: unknown = err;
  // TypeORM wraps driver errors (QueryFailedError) and keeps the driver's code on itself or driverError.
  for (let depth = 0; depth < 4 && e !== null && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { driverError?: unknown; cause?: unknown }).driverError ?? (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Maps any error thrown by a handler or the store to the ConnectError a client
 * sees. Unknown errors are logged with the RPC name and answered INTERNAL with
 * no detail, so SQL text never reaches a client.
 */
export function toConnectError(err: unknown, rpc: string, logger: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof InvalidRequestError) return new ConnectError(err.message, Code.InvalidArgument, undefined, undefined, err);
  if (err instanceof ServiceNotFoundError) return new ConnectError(err.message, Code.NotFound, undefined, undefined, err);
  if (err instanceof TableNotFoundError) return new ConnectError(err.message, Code.NotFound, undefined, undefined, err);
  if (err instanceof LeaseLostError) {
    return new ConnectError(
      err.message,
      Code.FailedPrecondition,
      undefined,
      [{ desc: LeaseLostDetailSchema, value: create(LeaseLostDetailSchema, { leaseTokens: [...err.leaseTokens] }) }],
      err,
    );
  }
  if (err instanceof LimitExceededError) return new ConnectError(err.message, Code.ResourceExhausted, undefined, undefined, err);
  if (err instanceof CursorExpiredError) return new ConnectError(err.message, Code.OutOfRange, undefined, undefined, err);
  if (err instanceof ContentionError) return new ConnectError(err.message, Code.Aborted, undefined, undefined, err);
  if (err instanceof DatabaseBusyError) {
    logger.warn({ rpc, err: err.message }, "database pool busy");
    return new ConnectError(err.message, Code.Unavailable, undefined, undefined, err);
  }
  if (isDatabaseUnavailable(err)) {
    logger.warn({ rpc, err }, "database unavailable");
    return new ConnectError("the database is unavailable; retry shortly", Code.Unavailable, undefined, undefined, err);
  }
  logger.error({ rpc, err }, "internal error");
  return new ConnectError("internal error; the server logged the cause", Code.Internal, undefined, undefined, err);
}
