/** An error as one line for a log or stderr: its class and message (a thrown non-Error as text). */
export function errorLine(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
