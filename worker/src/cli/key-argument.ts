/**
 * `--key '{"subject_id":3}'`: a key, or a restriction (some of its
 * attributes), read as JSON and checked against the table's key attributes
 * before anything is sent, so a typo is one clear line and changes nothing.
 *
 * int64 attributes take a JSON integer or, beyond 2^53 (where a JSON number
 * is already rounded when parsed), a decimal string: `{"id":"9007199254740993"}`.
 */
import type { KeyAttributeInfo, KeyRecord, KeyValue } from "@populus/sdk";
import { ExitCode } from "../exit-codes.js";
import { CliError } from "./failure.js";

/** Whether the JSON must name every key attribute (a key) or may name some (a restriction). */
export type KeyArgumentKind = "key" | "restriction";

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function attributeValue(option: string, attribute: KeyAttributeInfo, v: unknown): KeyValue {
  const wrong = (expected: string) =>
    new CliError(`${option}: "${attribute.name}" is an ${attribute.type} attribute; ${expected}, got ${JSON.stringify(v)}`, ExitCode.usage);
  switch (attribute.type) {
    case "int64": {
      if (typeof v === "number") {
        if (!Number.isInteger(v)) throw wrong("give a whole number");
        if (!Number.isSafeInteger(v)) throw wrong("write a whole number beyond 2^53 as a decimal string");
        return v;
      }
      if (typeof v === "string" && /^-?\d{1,19}$/.test(v)) {
        const n = BigInt(v);
        if (n >= INT64_MIN && n <= INT64_MAX) return Number.isSafeInteger(Number(n)) ? Number(n) : n;
      }
      throw wrong("give a whole number");
    }
    case "double":
      if (typeof v !== "number") throw wrong("give a number");
      return v;
    case "string":
      if (typeof v !== "string") throw wrong("give a string");
      return v;
    case "bool":
      if (typeof v !== "boolean") throw wrong("give true or false");
      return v;
  }
}

/**
 * The key (or restriction) in `text`, for a table with `attributes`;
 * CliError (exit 2) naming `option` for JSON that is not an object, an
 * attribute the table has not, a value of the wrong type, or (kind "key") a
 * missing attribute.
 */
export function parseKeyArgument(option: string, text: string, table: string, attributes: readonly KeyAttributeInfo[], kind: KeyArgumentKind): KeyRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CliError(`${option} ${JSON.stringify(text)} is not JSON (${(err as Error).message}); write e.g. ${example(attributes)}`, ExitCode.usage);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CliError(`${option} must be a JSON object of key attributes, e.g. ${example(attributes)}`, ExitCode.usage);
  }
  const names = attributes.map((a) => a.name).join(", ");
  const key: Record<string, KeyValue> = {};
  for (const [name, v] of Object.entries(parsed)) {
    const attribute = attributes.find((a) => a.name === name);
    if (attribute === undefined) throw new CliError(`${option}: ${table} has no key attribute "${name}"; its key attributes are ${names}`, ExitCode.usage);
    key[name] = attributeValue(option, attribute, v);
  }
  if (kind === "key") {
    const missing = attributes.filter((a) => !(a.name in key)).map((a) => a.name);
    if (missing.length > 0)
      throw new CliError(`${option}: a key of ${table} names every key attribute (${names}); missing ${missing.join(", ")}`, ExitCode.usage);
  } else if (Object.keys(key).length === 0) {
    throw new CliError(`${option} names no attribute; give at least one of ${names}`, ExitCode.usage);
  }
  return key;
}

const EXAMPLE_VALUES = { int64: "3", string: '"a"', double: "1.5", bool: "true" } as const;

/** `{"subject_id":3,"session":"a"}`, made of the table's own attributes. */
function example(attributes: readonly KeyAttributeInfo[]): string {
  if (attributes.length === 0) return `'{"id":3}'`;
  return `'{${attributes.map((a) => `"${a.name}":${EXAMPLE_VALUES[a.type]}`).join(",")}}'`;
}
