/**
 * One task at a time per key, in call order: a queue per key in this process, no lock in the
 * database. A task that fails does not hold up the ones after it.
 */
export class TurnsPerKey {
  readonly #last = new Map<string, Promise<unknown>>();

  /** Runs `task` once every task given before for `key` has settled; answers what it answers. */
  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.#last.get(key);
    const mine = before === undefined ? task() : before.then(task, task);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.#last.set(key, settled);
    try {
      return await mine;
    } finally {
      if (this.#last.get(key) === settled) this.#last.delete(key);
    }
  }

  /** Keys with a task running or waiting. */
  get busyKeys(): number {
    return this.#last.size;
  }
}
