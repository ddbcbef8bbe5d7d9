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
import type { Key, Value, ValueSchema } from "./gen/populus/v1/types_pb.js";

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

/** The proto Value of one attribute; throws InvalidArgumentError naming `attribute`. */
export function toProtoValue(attribute: string, v: unknown): Value {
  switch (typeof v) {
    case "bigint":
      if (v < INT64_MIN || v >= INT64_END) throw new InvalidArgumentError(`key attribute "${attribute}": ${v} does not fit in int64`);
      return value({ case: "intValue", value: v });
    case "number":
      if (!Number.isFinite(v)) throw new InvalidArgumentError(`key attribute "${attribute}": ${v} is not a finite number`);
      if (Number.isInteger(v)) {
        if (!Number.isSafeInteger(v)) {
          throw new InvalidArgumentError(`key attribute "${attribute}": ${v} is beyond 2^53 and was already rounded; pass it as a bigint`);
        }
        return value({ case: "intValue", value: BigInt(v) });
      }
      return value({ case: "doubleValue", value: v });
    case "string":
      return value({ case: "stringValue", value: v });
    case "boolean":
      return value({ case: "boolValue", value: v });
    default:
      throw new InvalidArgumentError(
        `key attribute "${attribute}": ${v === null ? "null" : typeof v} is not a key value; use a number, bigint, string or boolean`,
      );
  }
}

/** Keys per call of the RPCs that take key lists (Refresh, Ignore, DeleteJobs, DeleteTargets): the server's limit. */
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
