/**
 * Every error the SDK throws, and the one place where a gRPC status becomes a
 * typed error (`fromRpcError`). The ConnectError is kept as `cause` so that
 * its metadata and details stay reachable.
 *
 * Errors are recognised by name, not by prototype identity: `instanceof`
 * goes through `static [Symbol.hasInstance]`, which also accepts an error
 * made by another copy of this module (e.g. `dist/` and `src/` loaded in one
 * process), the way connect-es's ConnectError does. No decorators (TS 7).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { LeaseLostDetailSchema } from "./gen/populus/v1/types_pb.js";

/** Names of the classes an error is an instance of, set on each instance (shared across module copies). */
const KINDS = Symbol.for("@populus/sdk/error-kinds");

/** Base of every SDK error: `code` is the gRPC code of the answer (or the closest one for local errors). */
export class PopulusError extends Error {
  /** The gRPC status code. */
  readonly code: Code;

  /** An error with a message and code; `cause` keeps the original error. */
  constructor(message: string, code: Code, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
    const kinds: string[] = [];
    for (let c: unknown = new.target; typeof c === "function" && c !== Error; c = Object.getPrototypeOf(c)) {
      kinds.push((c as { name: string }).name);
    }
    Object.defineProperty(this, KINDS, { value: kinds, enumerable: false });
  }

  /** True for an error of this class or a subclass, from any copy of this module. */
  static override [Symbol.hasInstance](v: unknown): boolean {
    if (typeof v !== "object" || v === null) return false;
    const kinds = (v as { [KINDS]?: unknown })[KINDS];
    // `this` is the class instanceof asks about (a subclass too), not PopulusError.
    // biome-ignore lint/complexity/noThisInStatic: the receiver is what makes this work for every subclass.
    return Array.isArray(kinds) && kinds.includes(this.name);
  }
}

/** INVALID_ARGUMENT: the request (or a key, option or result) is malformed; the message says what to fix. */
export class InvalidArgumentError extends PopulusError {
  /** An INVALID_ARGUMENT error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.InvalidArgument, options);
  }
}

/** A bad `connect()` option, `config.jobs` value or `POPULUS_*` variable. */
export class InvalidConfigError extends InvalidArgumentError {}

/** NOT_FOUND: the table was never refreshed (declared) on this server. */
export class TableNotFoundError extends PopulusError {
  /** A NOT_FOUND error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.NotFound, options);
  }
}

/** FAILED_PRECONDITION: leases no longer held (expired and reassigned, released or deleted). */
export class LeaseLostError extends PopulusError {
  /** The lost lease tokens, from the answer's LeaseLostDetail (empty if it carried none). */
  readonly leaseTokens: readonly string[];

  /** A FAILED_PRECONDITION error about the given tokens. */
  constructor(message: string, leaseTokens: readonly string[], options?: { cause?: unknown }) {
    super(message, Code.FailedPrecondition, options);
    this.leaseTokens = leaseTokens;
  }
}

/** UNAVAILABLE: the server or its database cannot be reached (retried before it surfaces). */
export class UnavailableError extends PopulusError {
  /** An UNAVAILABLE error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.Unavailable, options);
  }
}

/** RESOURCE_EXHAUSTED: a batch above the server's limit, or the server is overloaded. */
export class ResourceExhaustedError extends PopulusError {
  /** A RESOURCE_EXHAUSTED error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.ResourceExhausted, options);
  }
}

/** UNAUTHENTICATED: the server requires a bearer token (the `token` option) and none or a wrong one was sent. */
export class UnauthenticatedError extends PopulusError {
  /** An UNAUTHENTICATED error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.Unauthenticated, options);
  }
}

/** PERMISSION_DENIED: the token's role may not call this RPC. */
export class PermissionDeniedError extends PopulusError {
  /** A PERMISSION_DENIED error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.PermissionDenied, options);
  }
}

/**
 * OUT_OF_RANGE: a `jobs.watch({ cursor })` cursor whose events the server
 * has already pruned, so resuming after it would skip events. Subscribe again
 * without a cursor: that starts from a fresh snapshot of the counts.
 */
export class CursorExpiredError extends PopulusError {
  /** An OUT_OF_RANGE error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.OutOfRange, options);
  }
}

/** A `make` failed (thrown by populate with `suppressErrors: false`, after the failure was recorded). */
export class MakeError extends PopulusError {
  /** The key whose make failed. */
  readonly key: Readonly<Record<string, unknown>>;

  /** The failure of `make(key)`; `cause` is what make threw, when it ran in this process. */
  constructor(key: Readonly<Record<string, unknown>>, message: string, options?: { cause?: unknown }) {
    super(message, Code.Unknown, options);
    this.key = key;
  }
}

/** A populate child process could not run: it could not load the table, or it died. */
export class WorkerProcessError extends PopulusError {
  /** A child-process failure. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, Code.Internal, options);
  }
}

/**
 * The typed error for a failed call (the single mapping of gRPC codes):
 * INVALID_ARGUMENT → InvalidArgumentError, NOT_FOUND → TableNotFoundError,
 * FAILED_PRECONDITION → LeaseLostError (tokens from LeaseLostDetail),
 * UNAVAILABLE → UnavailableError, RESOURCE_EXHAUSTED → ResourceExhaustedError,
 * UNAUTHENTICATED → UnauthenticatedError, PERMISSION_DENIED →
 * PermissionDeniedError, OUT_OF_RANGE → CursorExpiredError; any other code → PopulusError with that code. The
 * message is the server's (`rawMessage`). A PopulusError passes through.
 */
export function fromRpcError(err: unknown): PopulusError {
  if (err instanceof PopulusError) return err;
  const ce = ConnectError.from(err);
  const message = ce.rawMessage;
  const options = { cause: ce };
  switch (ce.code) {
    case Code.InvalidArgument:
      return new InvalidArgumentError(message, options);
    case Code.NotFound:
      return new TableNotFoundError(message, options);
    case Code.FailedPrecondition:
      return new LeaseLostError(
        message,
        ce.findDetails(LeaseLostDetailSchema).flatMap((d) => d.leaseTokens),
        options,
      );
    case Code.Unavailable:
      return new UnavailableError(message, options);
    case Code.ResourceExhausted:
      return new ResourceExhaustedError(message, options);
    case Code.Unauthenticated:
      return new UnauthenticatedError(message, options);
    case Code.PermissionDenied:
      return new PermissionDeniedError(message, options);
    case Code.OutOfRange:
      return new CursorExpiredError(message, options);
    default:
      return new PopulusError(message, ce.code, options);
  }
}
