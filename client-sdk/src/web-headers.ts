/**
 * node:http2's header objects as web Headers, the form connect-es's types carry. Shared by the
 * SDK's server streams (server-stream.ts) and the server's fast paths (unary-fast-path.ts).
 */
import type http2 from "node:http2";

/** node's header object as web Headers, pseudo-headers left out (as connect-node does). */
export function webHeaders(incoming: http2.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.append(name, String(value));
  }
  return headers;
}
