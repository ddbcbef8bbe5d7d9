/**
 * The console's shell: asks the server who the operator is (and for a token when it wants one),
 * then shows the overview or one table by the address's hash (#/ or #/table/<name>/<tab>), under
 * a banner that says when the server cannot be reached and the page is getting back to it.
 */
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { StreamState } from "./follow-watch.js";
import { Console, type ConsoleContext } from "./hooks.js";
import { createJobClient } from "./rpc.js";
import { Throughput } from "./throughput.js";
import { type Role, storedToken, storeToken, type WhoAmI, whoAmI } from "./session.js";
import { Overview } from "./views/overview.js";
import { TABS, type Tab, TablePage } from "./views/table-page.js";

type Gate =
  | { readonly kind: "checking" }
  | { readonly kind: "unreachable"; readonly retryAt: number; readonly attempt: number }
  | { readonly kind: "token"; readonly problem: string | undefined }
  | { readonly kind: "ready"; readonly who: WhoAmI & { readonly role: Role }; readonly token: string | null };

type Route = { readonly page: "overview" } | { readonly page: "table"; readonly table: string; readonly tab: Tab };

function routeOf(hash: string): Route {
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "table" && parts[1] !== undefined && parts[1] !== "") {
    const tab = (TABS as readonly string[]).includes(parts[2] ?? "") ? (parts[2] as Tab) : "events";
    return { page: "table", table: parts[1], tab };
  }
  return { page: "overview" };
}

function useRoute(): Route {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onChange = () => setHash(location.hash);
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return useMemo(() => routeOf(hash), [hash]);
}

export function App() {
  const [gate, setGate] = useState<Gate>({ kind: "checking" });
  const token = useRef<string | null>(storedToken());

  /** Asks whoami with `candidate`; keeps it only if the server takes it. */
  const check = useCallback(async (candidate: string | null, attempt = 0): Promise<void> => {
    let who: WhoAmI;
    try {
      who = await whoAmI(candidate);
    } catch {
      // The server is down or restarting: try again by itself, sooner at first.
      const wait = Math.min(500 * 2 ** attempt, 8000);
      setGate({ kind: "unreachable", retryAt: Date.now() + wait, attempt: attempt + 1 });
      setTimeout(() => void check(candidate, attempt + 1), wait);
      return;
    }
    if (who.role === null) {
      token.current = null;
      storeToken(null);
      setGate({ kind: "token", problem: candidate === null ? undefined : who.problem });
      return;
    }
    token.current = candidate;
    storeToken(candidate);
    setGate({ kind: "ready", who: { ...who, role: who.role }, token: candidate });
  }, []);

  useEffect(() => void check(token.current), [check]);

  if (gate.kind === "checking") return <Shell>{<p class="muted">Connecting…</p>}</Shell>;
  if (gate.kind === "unreachable") {
    return (
      <Shell>
        <p class="notice notice-bad" data-banner="unreachable">
          The server at {location.host} cannot be reached. Trying again by itself (attempt {gate.attempt})…
        </p>
      </Shell>
    );
  }
  if (gate.kind === "token") return <TokenForm problem={gate.problem} onToken={(t) => void check(t)} />;
  return (
    <Ready
      who={gate.who}
      token={token}
      onSignOut={() => {
        storeToken(null);
        token.current = null;
        setGate({ kind: "token", problem: undefined });
      }}
      onAuthLost={(message) => {
        storeToken(null);
        token.current = null;
        setGate({ kind: "token", problem: `The server refused the token: ${message}` });
      }}
      onRecheck={() => void check(token.current)}
    />
  );
}

function Shell({ children, header }: { children: ComponentChildren; header?: ComponentChildren }) {
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          Populus
        </a>
        <span class="muted">{location.host}</span>
        <span class="spacer" />
        {header}
      </header>
      <main>{children}</main>
    </>
  );
}

function TokenForm({ problem, onToken }: { problem: string | undefined; onToken(token: string): void }) {
  const [text, setText] = useState("");
  return (
    <Shell>
      <form
        class="token-form panel"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim() !== "") onToken(text.trim());
        }}
      >
        <h1>Sign in</h1>
        <p>This server requires a bearer token. The console keeps it for this tab only, and offers what its role may do.</p>
        {problem !== undefined && (
          <p class="notice notice-bad" data-token-problem>
            {problem}
          </p>
        )}
        <label>
          Token
          <input type="password" name="token" autocomplete="off" value={text} onInput={(e) => setText(e.currentTarget.value)} />
        </label>
        <button type="submit">Use this token</button>
      </form>
    </Shell>
  );
}

function Ready(props: {
  who: WhoAmI & { role: Role };
  token: { current: string | null };
  onSignOut(): void;
  onAuthLost(message: string): void;
  onRecheck(): void;
}) {
  const route = useRoute();
  const [streams, setStreams] = useState<ReadonlyMap<string, StreamState>>(new Map());
  const [resumedAt, setResumedAt] = useState<number | undefined>(undefined);
  const { onAuthLost, onRecheck, token } = props;
  const reportStream = useCallback((id: string, state: StreamState | undefined) => {
    setStreams((old) => {
      const next = new Map(old);
      if (state === undefined) next.delete(id);
      else next.set(id, state);
      return next;
    });
    if (state?.kind === "live" && state.resumed) setResumedAt(Date.now());
  }, []);
  const client = useMemo(() => createJobClient(() => token.current), [token]);
  const throughputs = useRef(new Map<string, Throughput>());
  const throughputOf = useCallback((table: string) => {
    let t = throughputs.current.get(table);
    if (t === undefined) throughputs.current.set(table, (t = new Throughput()));
    return t;
  }, []);
  const context: ConsoleContext = useMemo(
    () => ({
      client,
      role: props.who.role,
      tokensRequired: props.who.tokensRequired,
      authLost: onAuthLost,
      roleRefused: onRecheck,
      reportStream,
      throughputOf,
    }),
    [client, props.who.role, props.who.tokensRequired, onAuthLost, onRecheck, reportStream, throughputOf],
  );
  const header = (
    <>
      <span class={`badge role-${props.who.role}`} data-role={props.who.tokensRequired ? props.who.role : "open"}>
        {props.who.tokensRequired ? `${props.who.role} token` : "no tokens: open on this address"}
      </span>
      {props.who.tokensRequired && (
        <button type="button" class="link" onClick={props.onSignOut}>
          forget token
        </button>
      )}
    </>
  );
  return (
    <Console.Provider value={context}>
      <Shell header={header}>
        <ConnectionBanner streams={streams} resumedAt={resumedAt} />
        {route.page === "overview" ? <Overview /> : <TablePage key={route.table} table={route.table} tab={route.tab} />}
      </Shell>
    </Console.Provider>
  );
}

/** How long "reconnected" stays up after a stream resumed (ms). */
const RESUMED_NOTE_MS = 6000;

function ConnectionBanner({ streams, resumedAt }: { streams: ReadonlyMap<string, StreamState>; resumedAt: number | undefined }) {
  const [, setTick] = useState(0);
  const states = [...streams.values()];
  const down = states.find((s) => s.kind === "reconnecting");
  useEffect(() => {
    if (resumedAt === undefined) return;
    const timer = setTimeout(() => setTick((n) => n + 1), RESUMED_NOTE_MS);
    return () => clearTimeout(timer);
  }, [resumedAt]);
  if (down !== undefined && down.kind === "reconnecting") {
    return (
      <p class="notice notice-bad banner" role="alert" data-banner="reconnecting">
        Connection lost: {down.reason}. Reconnecting by itself (attempt {down.attempt}); the page resumes from the last event it saw.
      </p>
    );
  }
  if (resumedAt !== undefined && Date.now() - resumedAt < RESUMED_NOTE_MS) {
    return (
      <p class="notice notice-good banner" role="status" data-banner="resumed">
        Reconnected: resumed from the last event seen, nothing missed.
      </p>
    );
  }
  return null;
}
