/**
 * The web console on the API's own port: `GET /` answers its page, `GET /console/<file>` the
 * script and stylesheet that server/console/build.ts bundled into dist/console, and
 * `GET /console/whoami` the role of the request's bearer token, so the page offers only what
 * that role may do (no JobService RPC tells a token's role).
 *
 * The page and its files are open like GET /metrics: they hold no data. Every job, count and
 * action reaches the page through JobService with the token, where auth.ts checks it.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bearerToken, type Role, type TokenTable } from "./auth.js";

/** What serve() needs of an HTTP/1.1 or HTTP/2 request and response. */
interface MinimalRequest {
  readonly url?: string;
  readonly method?: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}
interface MinimalResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string | Uint8Array): unknown;
}

/** Where the build puts the bundled console: dist/console beside dist/service. */
export const CONSOLE_ASSETS_DIR = fileURLToPath(new URL("../console/", import.meta.url));

/** The whoami answer: whether the server wants tokens, and what the presented one may do. */
export interface WhoAmI {
  /** False when the server runs without tokens: then every RPC is open, as for an admin. */
  readonly tokensRequired: boolean;
  /** The role the page may act as; null when a token is required and none valid was sent. */
  readonly role: Role | null;
  /** Why role is null, for the page to show. */
  readonly problem?: string;
}

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

/**
 * The page may load only its own files and talk only to this origin: nothing from a CDN, no
 * inline script (a key or an error message rendered by the page cannot become code), and no
 * framing (an admin's clicks cannot be hijacked through an invisible frame).
 */
const PAGE_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const COMMON_HEADERS: Readonly<Record<string, string>> = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** Reads the bundled console's files into memory (a few hundred kB); an unbuilt console is an empty map. */
export function loadConsoleAssets(dir: string = CONSOLE_ASSETS_DIR): ReadonlyMap<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name)];
    if (type === undefined) continue;
    const body = readFileSync(join(dir, name));
    assets.set(name, { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` });
  }
  return assets;
}

/** Serves the console's page, files and whoami; see the module comment. */
export class ConsoleEndpoints {
  constructor(
    private readonly assets: ReadonlyMap<string, Asset>,
    private readonly tokens: TokenTable | null,
  ) {}

  /** Answers the console's requests; false for any other request (not ours). */
  serve(req: MinimalRequest, res: MinimalResponse): boolean {
    const path = (req.url ?? "").split("?")[0] ?? "";
    const name = path === "/" || path === "/console" || path === "/console/" ? "index.html" : path.startsWith("/console/") ? path.slice(9) : undefined;
    if (name === undefined) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", ...COMMON_HEADERS });
      res.end("");
      return true;
    }
    if (name === "whoami") {
      const body = JSON.stringify(this.whoami(headerText(req.headers.authorization)));
      res.writeHead(200, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...COMMON_HEADERS });
      res.end(req.method === "HEAD" ? "" : body);
      return true;
    }
    const asset = this.assets.get(name);
    if (asset === undefined) {
      const why = this.assets.size === 0 ? "the console is not built into this server: run npm run build" : `no console file ${name}`;
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", ...COMMON_HEADERS });
      res.end(`${why}\n`);
      return true;
    }
    const headers: Record<string, string> = {
      "content-type": asset.type,
      etag: asset.etag,
      // Revalidated on every load (a 304 when unchanged): a new server version's page is never mixed with an old script.
      "cache-control": "no-cache",
      ...COMMON_HEADERS,
    };
    if (name === "index.html") headers["content-security-policy"] = PAGE_POLICY;
    if (headerText(req.headers["if-none-match"]) === asset.etag) {
      res.writeHead(304, headers);
      res.end("");
      return true;
    }
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? "" : asset.body);
    return true;
  }

  /**
   * The role of the request's bearer token. Always a 200 with the answer in the body: "no valid
   * token" is what the page asked, not a failure (and a 401 would be logged in the browser's
   * console as a failed resource on every visit before the operator has typed a token).
   */
  whoami(authorization: string | undefined): WhoAmI {
    if (this.tokens === null) return { tokensRequired: false, role: "admin" };
    const token = bearerToken(authorization ?? null);
    if (token === undefined) return { tokensRequired: true, role: null, problem: "this server requires a bearer token" };
    if (token === null) return { tokensRequired: true, role: null, problem: 'the authorization header must be "Bearer <token>"' };
    const caller = this.tokens.identify(token);
    if (caller === undefined) return { tokensRequired: true, role: null, problem: "the bearer token is not valid on this server" };
    return { tokensRequired: true, role: caller.role };
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
