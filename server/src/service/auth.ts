/**
 * Who may call what: bearer tokens, each with one of three roles, checked by
 * a connect interceptor on every JobService call (health, reflection,
 * GET /metrics and the web console's page stay open: probes, `grpcurl list`
 * and the page's files carry no secrets; the page's data comes through
 * JobService with the operator's token).
 *
 * - reader: ListJobs, GetProgress, ListTables, ListTargets, Watch
 * - worker: reader, plus Refresh, ClaimRefresh, AbandonRefresh, Reserve,
 *   Complete, Fail, Heartbeat, Release
 * - admin:  everything, also DeleteJobs, DeleteTargets and Ignore
 *
 * Tokens come from a file (`--tokens-file`, lines `<role> <token>`) or the
 * environment (`POPULUS_TOKENS`, entries `<role>:<token>`); only their SHA-256
 * is kept in memory. A presented token is hashed and compared with every
 * configured hash in constant time, so neither the comparison nor the number
 * of tokens configured leaks through timing. Error messages name roles and
 * RPCs, never a token.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { JobService } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { ConfigError, readOptionFile } from "../config.js";

export type Role = "reader" | "worker" | "admin";

const ROLES: readonly Role[] = ["reader", "worker", "admin"];
const RANK: Readonly<Record<Role, number>> = { reader: 0, worker: 1, admin: 2 };

/**
 * The least role each JobService RPC needs. Typed over the service's methods,
 * so an RPC added to the proto does not compile until it is given a role
 * (an unlisted RPC must never be open by omission).
 */
export const REQUIRED_ROLE: Readonly<Record<keyof typeof JobService.method, Role>> = {
  listJobs: "reader",
  getProgress: "reader",
  listTables: "reader",
  listTargets: "reader",
  watch: "reader",
  refresh: "worker",
  claimRefresh: "worker",
  abandonRefresh: "worker",
  reserve: "worker",
  complete: "worker",
  fail: "worker",
  heartbeat: "worker",
  release: "worker",
  deleteJobs: "admin",
  deleteTargets: "admin",
  ignore: "admin",
};

/**
 * RFC 6750's b64token, so a token fits an HTTP header unescaped and cannot
 * contain the separators of the file and env formats.
 */
const TOKEN_SYNTAX = /^[A-Za-z0-9\-._~+/]+=*$/;
/** Shorter tokens can be guessed; `openssl rand -hex 32` makes a good one. */
export const MIN_TOKEN_LENGTH = 16;

/** A configured token: its hash and role. */
interface TokenEntry {
  readonly hash: Buffer;
  readonly role: Role;
}

/** Who made a call, as later interceptors see it (the Watch limit counts per caller). */
export interface Caller {
  readonly role: Role;
  /** Stable and secret-free: a prefix of the token's hash. */
  readonly id: string;
}

/** Set by the auth interceptor for an authenticated call; undefined when the server runs without tokens. */
export const CALLER = createContextKey<Caller | undefined>(undefined, { description: "populus authenticated caller" });

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** The configured tokens, hashed. */
export class TokenTable {
  readonly #entries: readonly TokenEntry[];

  private constructor(entries: readonly TokenEntry[]) {
    this.#entries = entries;
  }

  /** How many tokens of each role are configured (for the start log line). */
  get roleCounts(): Record<Role, number> {
    const counts = { reader: 0, worker: 0, admin: 0 };
    for (const e of this.#entries) counts[e.role]++;
    return counts;
  }

  /** The caller a presented token identifies, or undefined when no configured token matches. */
  identify(token: string): Caller | undefined {
    const hash = sha256(token);
    let found: TokenEntry | undefined;
    // No early exit: every entry is compared, so the time taken says nothing about which (or whether one) matched.
    for (const entry of this.#entries) {
      if (timingSafeEqual(hash, entry.hash) && found === undefined) found = entry;
    }
    return found === undefined ? undefined : { role: found.role, id: found.hash.subarray(0, 8).toString("hex") };
  }

  /**
   * Parses `(role, token)` pairs; `where(i)` names the i-th pair's position
   * for messages (file and line, or variable and entry), never the token.
   */
  static fromPairs(pairs: readonly { role: string; token: string; where: string }[], source: string): TokenTable {
    if (pairs.length === 0) throw new ConfigError(`${source} holds no tokens; give at least one "<role> <token>" (roles: ${ROLES.join(", ")})`);
    const entries: TokenEntry[] = [];
    const seenAt = new Map<string, string>();
    for (const { role, token, where } of pairs) {
      if (!(ROLES as readonly string[]).includes(role)) {
        throw new ConfigError(`${where}: unknown role "${role.slice(0, 40)}"; use reader, worker or admin`);
      }
      if (!TOKEN_SYNTAX.test(token)) {
        throw new ConfigError(`${where}: the token has characters a bearer token cannot have; use letters, digits and - . _ ~ + / (e.g. openssl rand -hex 32)`);
      }
      if (token.length < MIN_TOKEN_LENGTH) {
        throw new ConfigError(`${where}: the token is ${token.length} characters; at least ${MIN_TOKEN_LENGTH} are required (e.g. openssl rand -hex 32)`);
      }
      const hex = sha256(token).toString("hex");
      const earlier = seenAt.get(hex);
      if (earlier !== undefined) throw new ConfigError(`${where}: the same token is already given at ${earlier}; each token has one role`);
      seenAt.set(hex, where);
      entries.push({ hash: Buffer.from(hex, "hex"), role: role as Role });
    }
    return new TokenTable(entries);
  }

  /** A tokens file: one `<role> <token>` per line; blank lines and lines starting with # are ignored. */
  static parseFile(text: string, path: string): TokenTable {
    const pairs: { role: string; token: string; where: string }[] = [];
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const where = `${path}:${i + 1}`;
      const fields = line.split(/\s+/);
      if (fields.length !== 2) throw new ConfigError(`${where}: expected "<role> <token>", got ${fields.length} field${fields.length === 1 ? "" : "s"}`);
      pairs.push({ role: fields[0] as string, token: fields[1] as string, where });
    });
    return TokenTable.fromPairs(pairs, path);
  }

  /** POPULUS_TOKENS: `<role>:<token>` entries separated by commas or whitespace. */
  static parseEnv(text: string): TokenTable {
    const pairs = text
      .split(/[\s,]+/)
      .filter((e) => e !== "")
      .map((entry, i) => {
        const where = `POPULUS_TOKENS entry ${i + 1}`;
        const colon = entry.indexOf(":");
        if (colon < 0) throw new ConfigError(`${where}: expected "<role>:<token>"`);
        return { role: entry.slice(0, colon), token: entry.slice(colon + 1), where };
      });
    return TokenTable.fromPairs(pairs, "POPULUS_TOKENS");
  }

  /** Reads a tokens file; a file that cannot be read is a ConfigError (exit 2). */
  static readFile(path: string): TokenTable {
    return TokenTable.parseFile(readOptionFile(path, "--tokens-file").toString("utf8"), path);
  }
}

/** Where the server's tokens come from, as config.ts parsed it. */
export type TokenSource = { readonly kind: "file"; readonly path: string } | { readonly kind: "env"; readonly text: string };

/** Loads the configured tokens; throws ConfigError with one line when they are unusable. */
export function loadTokens(source: TokenSource): TokenTable {
  return source.kind === "file" ? TokenTable.readFile(source.path) : TokenTable.parseEnv(source.text);
}

/** The token of an `authorization: Bearer <token>` header; undefined when absent, null when malformed. */
export function bearerToken(header: string | null): string | undefined | null {
  if (header === null || header.trim() === "") return undefined;
  const m = /^Bearer[ \t]+(\S+)\s*$/i.exec(header.trim());
  return m === null ? null : (m[1] as string);
}

/**
 * Authenticates and authorizes every JobService call. Errors are
 * ConnectErrors, so the error mapping passes them through and the metrics
 * interceptor (outside this one) records their codes.
 */
export function authInterceptor(tokens: TokenTable): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== "populus.v1.JobService") return next(req);
    const rpc = req.method.name;
    const token = bearerToken(req.header.get("authorization"));
    if (token === undefined) {
      throw new ConnectError(
        `${rpc} needs a bearer token: send the header "authorization: Bearer <token>" (SDK: connect({ token }) or POPULUS_TOKEN)`,
        Code.Unauthenticated,
      );
    }
    if (token === null) throw new ConnectError(`the authorization header must be "Bearer <token>"`, Code.Unauthenticated);
    const caller = tokens.identify(token);
    if (caller === undefined) throw new ConnectError("the bearer token is not valid on this server", Code.Unauthenticated);
    const needed = REQUIRED_ROLE[req.method.localName as keyof typeof REQUIRED_ROLE] ?? "admin";
    if (RANK[caller.role] < RANK[needed]) {
      throw new ConnectError(`${rpc} needs the ${needed} role; this token has the ${caller.role} role`, Code.PermissionDenied);
    }
    req.contextValues.set(CALLER, caller);
    return next(req);
  };
}
