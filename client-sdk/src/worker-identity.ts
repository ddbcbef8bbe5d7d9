/**
 * Who holds a lease: host, pid, OS user, a worker id unique in the cluster
 * (host:pid:random) and the code version chosen by `config.jobs.versionMethod`.
 * Recorded by the server with each reservation.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { hostname, userInfo } from "node:os";
import type { VersionMethod } from "./config.js";
import { InvalidConfigError } from "./errors.js";

/** The identity sent with Reserve. */
export interface WorkerIdentityInfo {
  /** host:pid:random, unique per populate call and process. */
  readonly workerId: string;
  /** The node's host name. */
  readonly host: string;
  /** The process id. */
  readonly pid: number;
  /** The OS user name ("" when the OS has none for this uid). */
  readonly user: string;
  /** The code version ("" when versionMethod is null). */
  readonly codeVersion: string;
}

/**
 * The code version for `method`: "" for null; for "git" the short commit hash
 * of the cwd's repository (InvalidConfigError when git cannot answer, so a
 * misconfigured node fails before it reserves anything).
 */
export function codeVersion(method: VersionMethod, cwd: string = process.cwd()): string {
  if (method === null) return "";
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    throw new InvalidConfigError(`config.jobs.versionMethod is "git" but \`git rev-parse --short HEAD\` failed in ${cwd}: ${detail}`, { cause: err });
  }
}

/** A fresh identity for this process. */
export function workerIdentity(method: VersionMethod): WorkerIdentityInfo {
  const host = hostname();
  let user = "";
  try {
    user = userInfo().username;
  } catch {
    // a uid without a passwd entry (some containers): recorded as ""
  }
  return Object.freeze({
    workerId: `${host}:${process.pid}:${randomBytes(4).toString("hex")}`,
    host,
    pid: process.pid,
    user,
    codeVersion: codeVersion(method),
  });
}
