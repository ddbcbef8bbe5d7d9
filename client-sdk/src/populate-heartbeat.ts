/**
 * Heartbeats of `populate({ processes })`: one heartbeat thread in the parent
 * renews the leases of all its child processes, instead of one thread per
 * child. The parent runs no make, so its thread is as far from a CPU-bound
 * make as a child's own thread would be (promise 3, ARCHITECTURE.md: "from a thread or
 * process other than the one running make"), and each child starts about
 * 100 ms of CPU faster (measured on the 2-core dev machine: a thread of its
 * own loads the connection and protobuf code a second time).
 *
 * - `RelayedLeaseKeeper` (child side) is the LeaseKeeper of a child's reserve
 *   loop: it sends what it holds and drops to the parent, and hears back the
 *   leases the server answered as lost.
 * - `ChildLeaseRelay` (parent side) forwards every child's leases to the
 *   parent's HeartbeatThread and routes each lost lease to the child that
 *   holds it. A child that is gone (SIGKILL) is heartbeated no more, so its
 *   leases expire as a crashed worker's must.
 *
 * @internal Not part of the public API.
 */
import type { ChildProcess } from "node:child_process";
import type { HeartbeatMessage, LostMessage } from "./child-protocol.js";
import { type HeartbeatListener, type LeaseKeeper, ProgressFilter } from "./heartbeat-thread.js";

/** The child's side: leases go to the parent's heartbeat thread over the IPC channel. */
export class RelayedLeaseKeeper implements LeaseKeeper {
  /** The parent's thread was running before the child was told to start. */
  readonly ready = Promise.resolve();
  readonly #send: (message: HeartbeatMessage) => void;
  readonly #listener: HeartbeatListener;
  readonly #sentProgress = new ProgressFilter();
  #stopped = false;

  /** `send` writes to the parent; `listener` hears of lost leases once `deliver` is given the parent's LostMessages. */
  constructor(send: (message: HeartbeatMessage) => void, listener: HeartbeatListener) {
    this.#send = send;
    this.#listener = listener;
  }

  hold(tokens: readonly string[]): void {
    if (tokens.length > 0 && !this.#stopped) this.#send({ type: "hold", tokens });
  }

  drop(tokens: readonly string[]): void {
    if (tokens.length === 0 || this.#stopped) return;
    this.#sentProgress.forget(tokens);
    this.#send({ type: "drop", tokens });
  }

  progress(token: string, fraction: number, message: string): void {
    if (!this.#stopped && this.#sentProgress.worthSending(token, fraction, message)) this.#send({ type: "progress", token, fraction, message });
  }

  /** A LostMessage from the parent. */
  deliver(message: LostMessage): void {
    if (!this.#stopped) this.#listener.onLost(message.tokens);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
  }
}

/** The parent's side: one heartbeat for the leases of every child. */
export class ChildLeaseRelay {
  readonly #keeper: LeaseKeeper;
  /** Which child holds each lease the keeper renews. */
  readonly #holder = new Map<string, ChildProcess>();

  constructor(keeper: LeaseKeeper) {
    this.#keeper = keeper;
  }

  /** A HeartbeatMessage from `child`. */
  receive(child: ChildProcess, message: HeartbeatMessage): void {
    if (message.type === "hold") {
      for (const t of message.tokens) this.#holder.set(t, child);
      this.#keeper.hold(message.tokens);
    } else if (message.type === "drop") {
      for (const t of message.tokens) this.#holder.delete(t);
      this.#keeper.drop(message.tokens);
    } else if (this.#holder.get(message.token) === child) {
      this.#keeper.progress(message.token, message.fraction, message.message);
    }
  }

  /** Leases the server answered as lost: each goes to the child that held it. */
  lost(tokens: readonly string[]): void {
    const byChild = new Map<ChildProcess, string[]>();
    for (const t of tokens) {
      const child = this.#holder.get(t);
      if (child === undefined) continue;
      this.#holder.delete(t);
      byChild.set(child, [...(byChild.get(child) ?? []), t]);
    }
    for (const [child, lost] of byChild) {
      // A child that is exiting needs no news; its exit is what populate waits for.
      if (child.connected) child.send({ type: "lost", tokens: lost } satisfies LostMessage, () => undefined);
    }
  }

  /** `child` is gone: what it held is renewed no more, so it expires and comes back like any crashed worker's. */
  gone(child: ChildProcess): void {
    const orphaned = [...this.#holder].filter(([, holder]) => holder === child).map(([t]) => t);
    for (const t of orphaned) this.#holder.delete(t);
    this.#keeper.drop(orphaned);
  }
}
