/**
 * Keys: JS records ↔ the proto `Key`, decided in this one module.
 *
 * To the wire: a bigint is an int64; a number that is an integer is an int64
 * (so `{ id: 3 }` and `{ id: 3n }` are the same key); any other finite number
 * is a double; a string is a string; a boolean is a bool. Anything else
 * (null, undefined, NaN, objects, Dates) is an InvalidArgumentError that names
 * the attribute. A number that is an integer but outside ±2^53 is refused,
 * since it was already rounded before it reached us; pass a bigint.
 *
 * From the wire: an int64 becomes a number when it is a safe integer
 * (|v| ≤ 2^53 − 1), else a bigint; the rest map back one to one.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { InvalidArgumentError } from "./errors.js";
import { AttributeType, type Key, type KeyAttribute, type Value, type ValueSchema } from "./gen/populus/v1/types_pb.js";

/** One attribute value of a key, as the pipeline writes it. */
export type KeyValue = bigint | number | string | boolean;

/** A key: primary-key attribute names to values, e.g. `{ subject_id: 3, session: "2026-11-01" }`. */
export type KeyRecord = Readonly<Record<string, KeyValue>>;

/*
 * Keys are built as message literals (a protobuf-es message is a plain object
 * with its $typeName) rather than with create(), whose reflection over the
 * schema was a fifth of the SDK's CPU in a large refresh. Key and Value have
 * no fields beyond the ones set here, so the literals are complete messages.
 */
const INT64_MIN = -(2n ** 63n);
const INT64_END = 2n ** 63n;

function value(kind: Value["kind"]): Value {
  return { $typeName: "populus.v1.Value", kind };
}

/** An attribute value's type on the wire. */
type ValueKind = "int64" | "double" | "string" | "bool";

/** The wire type of one attribute value; throws InvalidArgumentError naming `attribute` for anything else. */
function kindOf(attribute: string, v: unknown): ValueKind {
  switch (typeof v) {
    case "bigint":
      if (v < INT64_MIN || v >= INT64_END) throw new InvalidArgumentError(`key attribute "${attribute}": ${v} does not fit in int64`);
      return "int64";
    case "number":
      if (!Number.isFinite(v)) throw new InvalidArgumentError(`key attribute "${attribute}": ${v} is not a finite number`);
      if (!Number.isInteger(v)) return "double";
      if (!Number.isSafeInteger(v)) {
        throw new InvalidArgumentError(`key attribute "${attribute}": ${v} is beyond 2^53 and was already rounded; pass it as a bigint`);
      }
      return "int64";
    case "string":
      // A lone surrogate has no UTF-8 form: on the wire it would become U+FFFD, another key.
      if (!(v as string & { isWellFormed(): boolean }).isWellFormed()) {
        throw new InvalidArgumentError(`key attribute "${attribute}": the string has a lone surrogate (not well-formed UTF-16)`);
      }
      return "string";
    case "boolean":
      return "bool";
    default:
      throw new InvalidArgumentError(
        `key attribute "${attribute}": ${v === null ? "null" : typeof v} is not a key value; use a number, bigint, string or boolean`,
      );
  }
}

/** The proto Value of one attribute; throws InvalidArgumentError naming `attribute`. */
export function toProtoValue(attribute: string, v: unknown): Value {
  switch (kindOf(attribute, v)) {
    case "int64":
      return value({ case: "intValue", value: BigInt(v as number | bigint) });
    case "double":
      return value({ case: "doubleValue", value: v as number });
    case "string":
      return value({ case: "stringValue", value: v as string });
    case "bool":
      return value({ case: "boolValue", value: v as boolean });
  }
}

const ATTRIBUTE_TYPE: Record<ValueKind, AttributeType> = {
  int64: AttributeType.INT64,
  double: AttributeType.DOUBLE,
  string: AttributeType.STRING,
  bool: AttributeType.BOOL,
};

/** One attribute value as it appears in the canonical JSON of a key (int64 as a decimal string). */
function columnText(kind: ValueKind, v: unknown): string {
  switch (kind) {
    case "int64":
      return `"${v}"`;
    case "double":
    case "string":
      return JSON.stringify(v);
    case "bool":
      return v ? "true" : "false";
  }
}

/**
 * One Refresh call's keys, taken one by one: in columns (RefreshRequest.keys_json with
 * key_attributes) while they share the first key's attributes and types, which is one JSON text
 * for the server to parse instead of a Key message with a map of Value messages per key; as Key
 * messages when they do not (the server then names the key that does not match).
 */
export class RefreshKeys {
  /** Each key taken in columns, as its canonical JSON. */
  readonly #texts: string[] = [];
  /**
   * The first key's attribute names, sorted, with their wire types, and what comes before each
   * one's value in a key's JSON (`{"a":`, `,"b":`).
   */
  #shape: { readonly names: string[]; readonly kinds: ValueKind[]; readonly prefixes: string[] } | undefined;
  /** Every key as a Key message, once one did not fit the columns. */
  #messages: Key[] | undefined;

  get length(): number {
    return this.#messages?.length ?? this.#texts.length;
  }

  /** Adds a key; throws InvalidArgumentError for a key that is no key at all (as toProtoKey does). */
  add(key: unknown): void {
    if (this.#messages === undefined) {
      const text = this.#columnText(key);
      if (text !== undefined) {
        this.#texts.push(text);
        return;
      }
      // Another set of attributes or types: the call goes as Key messages, and the server says which key differs.
      this.#messages = this.#keysTaken().map(toProtoKey);
    }
    this.#messages.push(toProtoKey(key));
  }

  /**
   * The keys taken in columns, read back from their JSON, as records whose Key messages (toProtoKey)
   * hold the same attribute maps as the caller's keys would (listed in name order). The caller's
   * key objects are not kept for this rare case: a call's 10,000 of them outlived the source that
   * made them, for the young-generation collections to copy.
   */
  #keysTaken(): KeyRecord[] {
    if (this.#shape === undefined) return [];
    const { names, kinds } = this.#shape;
    return fromKeysJson(
      `[${this.#texts.join(",")}]`,
      names.filter((_, i) => kinds[i] === "int64"),
    );
  }

  /** The key's canonical JSON text, or undefined when it has not the first key's attributes and types (or is no object). */
  #columnText(key: unknown): string | undefined {
    if (typeof key !== "object" || key === null || Array.isArray(key)) return undefined;
    const record = key as Record<string, unknown>;
    if (this.#shape === undefined) {
      const names = Object.keys(record).sort();
      if (names.length === 0) return undefined;
      this.#shape = {
        names,
        kinds: names.map((name) => kindOf(name, record[name])),
        prefixes: names.map((name, i) => `${i === 0 ? "{" : ","}${JSON.stringify(name)}:`),
      };
    }
    const { names, kinds, prefixes } = this.#shape;
    let n = 0;
    for (const name in record) if (Object.hasOwn(record, name)) n++;
    if (n !== names.length) return undefined;
    let text = "";
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      if (!Object.hasOwn(record, name)) return undefined;
      const v = record[name];
      const kind = kindOf(name, v);
      if (kind !== kinds[i]) return undefined;
      text += (prefixes[i] as string) + columnText(kind, v);
    }
    return `${text}}`;
  }

  /** The call's keys: in columns, or as Key messages when they do not share one set of attributes. */
  fields(): { keys: Key[]; keysJson: string; keyAttributes: KeyAttribute[] } {
    if (this.#messages !== undefined || this.#shape === undefined) return { keys: this.#messages ?? [], keysJson: "", keyAttributes: [] };
    const { names, kinds } = this.#shape;
    return {
      keys: [],
      keysJson: `[${this.#texts.join(",")}]`,
      keyAttributes: names.map((name, i): KeyAttribute => ({ $typeName: "populus.v1.KeyAttribute", name, type: ATTRIBUTE_TYPE[kinds[i] as ValueKind] })),
    };
  }
}

export const KEYS_PER_CALL = 10_000;

/** Sends `keys` as protobuf keys in calls of at most KEYS_PER_CALL, one after another; answers the sum of the calls' counts. */
export async function sumOverKeyCalls(keys: readonly unknown[], call: (keys: Key[]) => Promise<number>): Promise<number> {
  let total = 0;
  for (let i = 0; i < keys.length; i += KEYS_PER_CALL) total += await call(keys.slice(i, i + KEYS_PER_CALL).map(toProtoKey));
  return total;
}

/** The proto Key of a key record; throws InvalidArgumentError for a non-object or a bad attribute. */
export function toProtoKey(key: unknown): Key {
  if (typeof key !== "object" || key === null || Array.isArray(key)) {
    throw new InvalidArgumentError(`a key must be an object of attribute values, e.g. { id: 3 }; got ${describe(key)}`);
  }
  const attributes: Record<string, Value> = {};
  let n = 0;
  for (const name in key) {
    if (!Object.hasOwn(key, name)) continue;
    attributes[name] = toProtoValue(name, (key as Record<string, unknown>)[name]);
    n++;
  }
  if (n === 0) throw new InvalidArgumentError("a key must have at least one attribute, e.g. { id: 3 }");
  return { $typeName: "populus.v1.Key", attributes };
}

/** The restriction map (attribute → Value) of a record of attribute values. */
export function toRestriction(restriction: Readonly<Record<string, KeyValue>> | undefined): Record<string, MessageInitShape<typeof ValueSchema>> {
  const out: Record<string, Value> = {};
  for (const [name, v] of Object.entries(restriction ?? {})) out[name] = toProtoValue(name, v);
  return out;
}

/** The JS value of a proto Value (int64 → number when safe, else bigint). */
export function fromProtoValue(v: Value | undefined): KeyValue {
  const kind = v?.kind;
  switch (kind?.case) {
    case "intValue": {
      const n = kind.value;
      return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
    }
    case "doubleValue":
    case "stringValue":
    case "boolValue":
      return kind.value;
    default:
      throw new InvalidArgumentError("the server sent a key attribute with no value");
  }
}

/**
 * Decodes keys sent as the text of one JSON array (LeaseColumns.keys_json): int64 attributes, named
 * in `int64`, come as decimal strings and become numbers, or bigints beyond 2^53 as fromProtoValue
 * makes them.
 */
export function fromKeysJson(json: string, int64: readonly string[]): KeyRecord[] {
  const keys = JSON.parse(json) as Record<string, KeyValue>[];
  if (!Array.isArray(keys)) throw new InvalidArgumentError("the server sent keys_json that is not a JSON array");
  if (int64.length === 0) return keys;
  for (const key of keys) {
    for (const name of int64) {
      const text = key[name] as string;
      const n = Number(text);
      key[name] = Number.isSafeInteger(n) ? n : BigInt(text);
    }
  }
  return keys;
}

/** The key record of a proto Key, attributes in name order. */
export function fromProtoKey(key: Key | undefined): KeyRecord {
  const out: Record<string, KeyValue> = {};
  for (const name of Object.keys(key?.attributes ?? {}).sort()) out[name] = fromProtoValue(key?.attributes[name]);
  return out;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "string" ? `"${v}"` : `${typeof v} ${String(v)}`;
}
