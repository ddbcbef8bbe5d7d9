/**
 * Turns an error at start-up into the one line an operator reads: what failed
 * and, where we know it, how to fix it. Driver detail stays out of the line.
 */
export function describeStartupError(err: unknown): string {
  const e = err as { code?: string; errno?: number; message?: string; driverError?: { code?: string } };
  const code = e?.code ?? e?.driverError?.code;
  switch (code) {
    case "EADDRINUSE":
      return "the port is already in use; stop the other process or pick another --port";
    case "EADDRNOTAVAIL":
      return "that address is not on this machine; check --host";
    case "EACCES":
      return "permission denied; ports below 1024 need privileges, pick another --port";
    case "ECONNREFUSED":
      return "connection refused; is the database server running and is the host/port right?";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "the database host name does not resolve; check the URL";
    case "ETIMEDOUT":
      return "connecting timed out; is the database reachable from here?";
    case "ER_ACCESS_DENIED_ERROR":
      return "access denied; check the user and password in the URL";
    case "ER_BAD_DB_ERROR":
      return "the database does not exist; create it first (CREATE DATABASE name)";
    case "SQLITE_CANTOPEN":
      return "cannot open the SQLite file; does its directory exist and is it writable?";
    default:
      return (e?.message ?? String(err)).split("\n")[0] ?? "unknown error";
  }
}
