/**
 * The exit codes of populus-worker and populus, one list for both so that a
 * script reads them alike (README, "Running workers" and "The populus CLI").
 */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** The work failed: a make failed (populus-worker), the server could not be reached or failed. */
  failed: 1,
  /** Bad usage or configuration: a bad option or value, or (populus) a request the server refused as invalid. One line on stderr. */
  usage: 2,
  /** The pipeline module could not be loaded, or exports no table. One line on stderr. */
  pipeline: 3,
  /** (populus) The server refused the credentials: no token, an unknown token, or a role too small for the command. One line on stderr. */
  refused: 4,
} as const;

/** One of the exit codes. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];
