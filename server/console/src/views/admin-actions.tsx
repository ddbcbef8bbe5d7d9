/**
 * The admin actions of a table page: delete errors (the next refresh queues those keys again),
 * ignore keys, delete computed rows. Each one asks first; the server's answer, a refusal
 * included, is said on the page. A PERMISSION_DENIED (the token's role changed since the page
 * asked) makes the page ask for the role again, which hides what it may no longer do.
 */
import { Code } from "@connectrpc/connect";
import { type Key, type KeyAttribute, JobStatus } from "@populus/sdk/gen/populus/v1/types_pb.js";
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { ConfirmDialog } from "../components/confirm-dialog.js";
import { countText } from "../format.js";
import { useConsole } from "../hooks.js";
import { KeyInputError, keyText, parseKeyLines } from "../keys.js";
import { callFailure, codeName, type JobClient } from "../rpc.js";
import { mayAdminister } from "../session.js";

/** An action waiting for the operator's yes. */
export interface AdminAction {
  readonly title: string;
  readonly body: ComponentChildren;
  readonly confirmLabel: string;
  /** Runs it; answers what was done, in words. */
  run(): Promise<string>;
}

export type ActionOutcome = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly text: string };

export interface AdminActions {
  /** Shows the confirmation; runs the action on yes. */
  ask(action: AdminAction): void;
  /** The dialog and the last outcome, to render. */
  readonly view: ComponentChildren;
}

/** Confirmation and outcome of admin actions; `done` runs after each success (lists re-read). */
export function useAdminActions(done: () => void): AdminActions {
  const { roleRefused, authLost } = useConsole();
  const [asking, setAsking] = useState<AdminAction | undefined>(undefined);
  const [outcome, setOutcome] = useState<ActionOutcome | undefined>(undefined);
  const run = (action: AdminAction) => {
    setAsking(undefined);
    action.run().then(
      (text) => {
        setOutcome({ ok: true, text });
        done();
      },
      (err: unknown) => {
        const f = callFailure(err);
        setOutcome({ ok: false, text: `${action.title} was refused (${codeName(f.code)}): ${f.message}` });
        if (f.code === Code.PermissionDenied) roleRefused();
        if (f.code === Code.Unauthenticated) authLost(f.message);
      },
    );
  };
  return {
    ask: (action) => {
      setOutcome(undefined);
      setAsking(action);
    },
    view: (
      <>
        {asking !== undefined && (
          <ConfirmDialog title={asking.title} confirmLabel={asking.confirmLabel} onConfirm={() => run(asking)} onCancel={() => setAsking(undefined)}>
            {asking.body}
          </ConfirmDialog>
        )}
        {outcome !== undefined && (
          <p class={`notice ${outcome.ok ? "notice-good" : "notice-bad"}`} role="status" data-outcome={outcome.ok ? "ok" : "refused"}>
            {outcome.text}
          </p>
        )}
      </>
    ),
  };
}

/** The Actions tab: three forms, each behind a confirmation; for other roles, what they would need. */
export function AdminPanel({ table, attributes, errorCount, actions }: { table: string; attributes: readonly KeyAttribute[]; errorCount: number; actions: AdminActions }) {
  const { client, role } = useConsole();
  const [ignoreText, setIgnoreText] = useState("");
  const [targetsText, setTargetsText] = useState("");
  const [allTargets, setAllTargets] = useState(false);
  const [inputProblem, setInputProblem] = useState<{ form: string; text: string } | undefined>(undefined);

  if (!mayAdminister(role)) {
    return (
      <div class="panel">
        <p class="notice" data-role-notice>
          Deleting errors, ignoring keys and deleting computed rows need an <b>admin</b> token; this token has the <b>{role}</b> role.
        </p>
        {actions.view}
      </div>
    );
  }

  const keysOrProblem = (form: string, text: string): Key[] | undefined => {
    try {
      const keys = parseKeyLines(text, attributes);
      setInputProblem(undefined);
      return keys;
    } catch (err) {
      if (!(err instanceof KeyInputError)) throw err;
      setInputProblem({ form, text: err.message });
      return undefined;
    }
  };
  const keyList = (keys: readonly Key[]) => (
    <ul class="key-list">
      {keys.slice(0, 10).map((k) => (
        <li key={keyText(k)}>
          <code>{keyText(k)}</code>
        </li>
      ))}
      {keys.length > 10 && <li>and {countText(keys.length - 10)} more</li>}
    </ul>
  );

  return (
    <div class="panel admin">
      {actions.view}
      <form
        class="action"
        onSubmit={(e) => {
          e.preventDefault();
          actions.ask(deleteErrorsAction(client, table, errorCount));
        }}
      >
        <h3>Delete errors</h3>
        <p class="muted">Deletes every error job of this table with its message and stack. The next refresh queues those keys again.</p>
        <button type="submit" class="danger" disabled={errorCount === 0} data-action="delete-errors">
          Delete {countText(errorCount)} error{errorCount === 1 ? "" : "s"}…
        </button>
      </form>

      <form
        class="action"
        onSubmit={(e) => {
          e.preventDefault();
          const keys = keysOrProblem("ignore", ignoreText);
          if (keys === undefined) return;
          actions.ask({
            title: `Ignore ${countText(keys.length)} key${keys.length === 1 ? "" : "s"} of ${table}`,
            body: (
              <>
                <p>These keys are marked ignore: no worker computes them, and refresh neither re-adds nor removes them. A job of them that is running loses its lease.</p>
                {keyList(keys)}
              </>
            ),
            confirmLabel: "Ignore",
            run: async () => `Ignored ${countText((await client.ignore({ table, keys })).ignored)} key(s).`,
          });
        }}
      >
        <h3>Ignore keys</h3>
        <label>
          Keys, one per line, as <code>{attributes.map((a) => `${a.name}=…`).join(", ")}</code>
          <textarea rows={3} value={ignoreText} onInput={(e) => setIgnoreText(e.currentTarget.value)} name="ignore-keys" />
        </label>
        {inputProblem?.form === "ignore" && <p class="field-problem">{inputProblem.text}</p>}
        <button type="submit" class="danger" data-action="ignore">
          Ignore…
        </button>
      </form>

      <form
        class="action"
        onSubmit={(e) => {
          e.preventDefault();
          const keys = allTargets ? [] : keysOrProblem("targets", targetsText);
          if (keys === undefined) return;
          actions.ask({
            title: allTargets ? `Delete every computed row of ${table}` : `Delete ${countText(keys.length)} computed row${keys.length === 1 ? "" : "s"} of ${table}`,
            body: (
              <>
                <p>The results are deleted; the next refresh queues their keys again and workers compute them anew.</p>
                {allTargets ? <p><b>Every row of the target is deleted.</b></p> : keyList(keys)}
              </>
            ),
            confirmLabel: "Delete",
            run: async () => `Deleted ${countText((await client.deleteTargets({ table, keys, all: allTargets })).deleted)} computed row(s).`,
          });
        }}
      >
        <h3>Delete computed rows</h3>
        <label>
          Keys, one per line
          <textarea rows={3} value={targetsText} disabled={allTargets} onInput={(e) => setTargetsText(e.currentTarget.value)} name="target-keys" />
        </label>
        <label class="inline">
          <input type="checkbox" checked={allTargets} onChange={(e) => setAllTargets(e.currentTarget.checked)} /> every row of the target
        </label>
        {inputProblem?.form === "targets" && <p class="field-problem">{inputProblem.text}</p>}
        <button type="submit" class="danger" data-action="delete-targets">
          Delete…
        </button>
      </form>
    </div>
  );
}

/** Deleting every error job of a table (DeleteJobs with status error). */
export function deleteErrorsAction(client: JobClient, table: string, errorCount: number, key?: Key): AdminAction {
  const one = key !== undefined;
  return {
    title: one ? `Delete the error of ${keyText(key)}` : `Delete ${countText(errorCount)} error${errorCount === 1 ? "" : "s"} of ${table}`,
    body: <p>{one ? "This error job is deleted" : "Every error job of this table is deleted"}, with its message and stack. The next refresh queues the key{one ? "" : "s"} again.</p>,
    confirmLabel: "Delete",
    run: async () =>
      `Deleted ${countText((await client.deleteJobs({ table, statuses: [JobStatus.ERROR], keys: one ? [key] : [] })).deleted)} error job(s).`,
  };
}
