/**
 * `connect()`: a client of one Populus server, which defines tables.
 */
import { type ConnectOptions, type ResolvedConnectOptions, resolveConnectOptions } from "./config.js";
import { InvalidArgumentError } from "./errors.js";
import { prewarmHeartbeat } from "./heartbeat-thread.js";
import { Jobs } from "./jobs.js";
import type { KeyRecord } from "./keys.js";
import { type JobServiceConnection, type JobServiceRpc, openConnection } from "./rpc.js";
import { Table } from "./table.js";
import type { TableDefinition } from "./table-definition.js";
import { listTables, type TableInfo } from "./table-info.js";
import { callerSite, childImporting, registerTable } from "./table-registry.js";

/** A client of one server. */
export class PopulusClient {
  /** Options in force (url, token). */
  readonly options: ResolvedConnectOptions;
  readonly #connection: JobServiceConnection;

  /** @internal Use connect(). */
  constructor(options: ResolvedConnectOptions) {
    this.options = options;
    this.#connection = openConnection(options);
  }

  /** @internal The unary RPCs (retried, typed errors). */
  get rpc(): JobServiceRpc {
    return this.#connection.rpc;
  }

  /**
   * Defines a table. Define tables at the top level of a module file: the
   * child processes of `populate({ processes })` import that module to find
   * the table by name.
   */
  table<K extends object = KeyRecord>(name: string, definition: TableDefinition<K>): Table<K> {
    if (typeof name !== "string" || !/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) {
      throw new InvalidArgumentError(`table name "${String(name)}": use letters, digits and underscores (at most 64), e.g. ProcessedData`);
    }
    const site = definition.module !== undefined ? { moduleUrl: definition.module, where: definition.module } : callerSite();
    const table = new Table<K>(name, definition, site, this.options, this.#connection.rpc);
    registerTable(table);
    // A process that defines a table populates it (or is a populate child, whose parent keeps its leases).
    if (!childImporting()) prewarmHeartbeat();
    return table;
  }

  /** The tables the server knows, with their key attributes and counts (ListTables; a reader token suffices). */
  listTables(): Promise<TableInfo[]> {
    return listTables(this.#connection.rpc);
  }

  /**
   * The jobs of a table known only by its name (as given, "ProcessedData",
   * or stored, "processed_data"), for operators and tools without the
   * pipeline module: every view, `ignore`, `progress` and `watch`, but not
   * `refresh`, which needs the key source. Nothing is sent until a call; a
   * table the server does not know is a TableNotFoundError then.
   */
  jobs<K extends object = KeyRecord>(table: string): Jobs<K> {
    if (typeof table !== "string" || !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(table)) {
      throw new InvalidArgumentError(`table name "${String(table)}": use letters, digits and underscores, starting with a letter (at most 64)`);
    }
    return new Jobs<K>(this.#connection.rpc, table, undefined);
  }

  /** Closes the connection (it reopens on the next call). Idle connections never keep the process alive. */
  close(): void {
    this.#connection.close();
  }
}

/**
 * A client of the server at `options.url`, else `POPULUS_URL`, else
 * http://127.0.0.1:50051. Nothing is sent until the first call.
 */
export function connect(options: ConnectOptions = {}): PopulusClient {
  return new PopulusClient(resolveConnectOptions(options));
}
