/**
 * Who the operator is: the bearer token kept for this tab only (sessionStorage, never
 * localStorage: closing the tab forgets it), and the role the server gives it
 * (GET /console/whoami, server/src/service/console.ts).
 */

/** The three roles of server/src/service/auth.ts. */
export type Role = "reader" | "worker" | "admin";

/** The answer of GET /console/whoami. */
export interface WhoAmI {
  /** False when the server runs without tokens (then everything is open, as for an admin). */
  readonly tokensRequired: boolean;
  /** null when a token is required and none valid was sent. */
  readonly role: Role | null;
  /** Why role is null. */
  readonly problem?: string;
}

const TOKEN_KEY = "populus.console.token";

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

/** Asks the server what `token` may do; rejects when the server cannot be reached. */
export async function whoAmI(token: string | null, signal?: AbortSignal): Promise<WhoAmI> {
  const res = await fetch("/console/whoami", {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
    cache: "no-store",
    signal,
  });
  if (!res.ok) throw new Error(`GET /console/whoami answered HTTP ${res.status}`);
  return (await res.json()) as WhoAmI;
}

/** The admin role is needed for DeleteJobs, Ignore and DeleteTargets (auth.ts REQUIRED_ROLE). */
export function mayAdminister(role: Role | null): boolean {
  return role === "admin";
}
