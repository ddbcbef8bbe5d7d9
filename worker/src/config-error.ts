/** A configuration or usage the program cannot start with: it exits 2 (ExitCode.usage) with the message as its one line. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}
