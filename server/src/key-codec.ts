/**
 * Keys between the wire and the store: the one module that turns a protobuf
 * Key into the canonical form stored in the database, and back.
 *
 * Canonical form: a JSON object with the attribute names sorted, int64 values
 * as decimal strings (exact beyond 2^53), strings as strings, doubles as JSON
 * numbers and booleans as booleans, e.g. `{"session":"2026-11-01","subject_id":"3"}`.
 * The key hash, 32 characters, is the unique column of both the jobs table and
 * the target, the way DataJoint keys its `~jobs`; how it is made is the table's
 * KeyHashScheme.
 */
import { hash } from "node:crypto";
import { AttributeType, type Key, type Value } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { InvalidKeyError } from "./errors.js";

/** A key attribute type, as stored in the table definition. */
export type AttributeKind = "int64" | "string" | "double" | "bool";

/** One key attribute: name and type. */
export interface KeyAttributeDef {
  readonly name: string;
  readonly type: AttributeKind;
}

/** A table's key attributes, sorted by name. */
export type KeyAttributes = readonly KeyAttributeDef[];

/**
 * How a table's key hashes are made; each table keeps the scheme it was declared with
 * (`~populus_tables.key_hash`), since its stored rows are found by their hashes.
 *
 * - "sha256": the first 128 bits of the canonical JSON's SHA-256, in hex (tables declared before
 *   "ordered").
 * - "ordered": 12 base-32 digits that follow the value of the key's first attribute (by name) in
 *   order, then the first 80 bits of the SHA-256 in hex. The hash is the key of a B-tree in the
 *   jobs table and in the target, and a random one sends each new key to a page of its own: a
 *   refresh or a Complete of 1,000 keys dirtied as many index pages, which SQLite writes to its WAL
 *   and InnoDB reads and splits. Key sources mostly come in key order, so these keys now land on a
 *   few neighbouring pages. Keys of the same first value (a bucket) differ by their 80 bits; two
 *   keys of one bucket share a hash with a chance of about n²/2^81 for n keys in that bucket.
 */
export type KeyHashScheme = "sha256" | "ordered";

/** The scheme of tables declared from now on. */
export const NEW_TABLE_KEY_HASH: KeyHashScheme = "ordered";

/** What encoding a table's keys takes: its attributes and its hash scheme (a DeclaredTable is one). */
export interface TableKeys {
  readonly keyAttributes: KeyAttributes;
  readonly keyHash: KeyHashScheme;
}

/** Whether a stored scheme name is one this server knows. */
export function isKeyHashScheme(name: string): name is KeyHashScheme {
  return name === "sha256" || name === "ordered";
}

/** A key in its stored form. */
export interface EncodedKey {
  /** 32 characters (0-9, a-v): the unique column of jobs and target. */
  readonly hash: string;
  /** The canonical JSON. */
  readonly json: string;
}

/** One `attribute = value` condition of a restriction, value in canonical JSON form. */
export interface AttributeCondition {
  readonly name: string;
  readonly type: AttributeKind;
  /** The value as it appears in the canonical JSON (int64 as a decimal string). */
  readonly value: string | number | boolean;
}

/** Attribute names as the design allows: letters, digits, underscore, at most 64. */
export const ATTRIBUTE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** Attributes one key may have: a primary key, not a record (DataJoint keys rarely pass ten). */
export const MAX_KEY_ATTRIBUTES = 32;

/**
 * Largest key, in UTF-8 bytes of its canonical JSON: 4 KiB, a little above
 * InnoDB's 3072-byte index key limit, which bounds DataJoint's primary keys
 * (names and quotes count here too). A key identifies a row; data belongs in the result.
 */
export const MAX_KEY_BYTES = 4096;

const KIND_OF_CASE = {
  intValue: "int64",
  stringValue: "string",
  doubleValue: "double",
  boolValue: "bool",
} as const;

/** Maps the stored attribute kind to its protobuf enum, and back. */
export function attributeTypeToProto(kind: AttributeKind): AttributeType {
  switch (kind) {
    case "int64":
      return AttributeType.INT64;
    case "string":
      return AttributeType.STRING;
    case "double":
      return AttributeType.DOUBLE;
    case "bool":
      return AttributeType.BOOL;
  }
}

function canonicalValue(name: string, value: Value, where: string): { kind: AttributeKind; json: string | number | boolean } {
  const v = value.kind;
  switch (v.case) {
    case "intValue":
      return { kind: "int64", json: v.value.toString() };
    case "stringValue":
      return { kind: "string", json: v.value };
    case "doubleValue":
      if (!Number.isFinite(v.value)) throw new InvalidKeyError(`${where}: attribute "${name}" is ${v.value}; double values must be finite`);
      return { kind: "double", json: v.value };
    case "boolValue":
      return { kind: "bool", json: v.value };
    default:
      throw new InvalidKeyError(`${where}: attribute "${name}" has no value set; set one of int_value, string_value, double_value, bool_value`);
  }
}

/** Reads the attribute names and types a key has, sorted by name. */
export function attributesOf(key: Key, where: string): KeyAttributes {
  const names = Object.keys(key.attributes).sort();
  if (names.length === 0) throw new InvalidKeyError(`${where}: the key has no attributes`);
  tooManyAttributes(names.length, where);
  return names.map((name) => {
    checkAttributeName(name, where);
    return { name, type: canonicalValue(name, key.attributes[name] as Value, where).kind };
  });
}

function checkAttributeName(name: string, where: string): void {
  if (!ATTRIBUTE_NAME.test(name)) {
    throw new InvalidKeyError(
      `${where}: attribute name "${name.slice(0, 80)}" is not allowed; use letters, digits and underscores (at most 64, not starting with a digit)`,
    );
  }
}

function tooManyAttributes(n: number, where: string): void {
  if (n > MAX_KEY_ATTRIBUTES) throw new InvalidKeyError(`${where}: the key has ${n} attributes; at most ${MAX_KEY_ATTRIBUTES} are allowed`);
}

function describe(attributes: KeyAttributes): string {
  return `{ ${attributes.map((a) => `${a.name}: ${a.type}`).join(", ")} }`;
}

/**
 * Encodes a key against a table's attributes. Throws InvalidKeyError naming
 * the difference when the key's attribute names or types differ.
 */
export function encodeKey(key: Key, attributes: KeyAttributes, scheme: KeyHashScheme, where: string): EncodedKey {
  const names = Object.keys(key.attributes);
  const mismatch = (): never => {
    throw new InvalidKeyError(`${where}: key ${describe(attributesOfLoose(key))} does not match the table's key attributes ${describe(attributes)}`);
  };
  // Before mismatch(), whose message lists the key's attributes.
  tooManyAttributes(names.length, where);
  if (names.length !== attributes.length) mismatch();
  const prefixes = attributePrefixes(attributes);
  let json = attributes.length === 0 ? "{" : "";
  let first: string | number | boolean = false;
  for (let i = 0; i < attributes.length; i++) {
    const attr = attributes[i] as KeyAttributeDef;
    // Own properties only: a table attribute named "constructor" must not find Object.prototype's.
    const value = Object.hasOwn(key.attributes, attr.name) ? key.attributes[attr.name] : undefined;
    if (value === undefined) mismatch();
    const c = canonicalValue(attr.name, value as Value, where);
    if (c.kind !== attr.type) mismatch();
    if (i === 0) first = c.json;
    json += prefixes[i] + JSON.stringify(c.json);
  }
  return encodedKey(`${json}}`, scheme, attributes[0]?.type, first, where);
}

/**
 * A key's canonical JSON with its hash, once it is known to be at most MAX_KEY_BYTES. `firstType`
 * and `first`: the first attribute's type and value as canonicalValue gives them (undefined for a
 * key without attributes).
 */
function encodedKey(json: string, scheme: KeyHashScheme, firstType: AttributeKind | undefined, first: string | number | boolean, where: string): EncodedKey {
  checkKeySize(json, 0, json.length, where, -1);
  return { hash: keyHash(json, scheme, firstType, first), json };
}

/**
 * InvalidKeyError when the key `text` holds from `start` to `end` is more than MAX_KEY_BYTES of
 * UTF-8; `index`: its place in the list `where` names, or -1.
 */
function checkKeySize(text: string, start: number, end: number, where: string, index: number): void {
  // A UTF-16 code unit is at most 3 bytes of UTF-8: short keys need no counting (nor slicing).
  if ((end - start) * 3 <= MAX_KEY_BYTES) return;
  const bytes = Buffer.byteLength(text.slice(start, end), "utf8");
  if (bytes > MAX_KEY_BYTES) {
    throw new InvalidKeyError(
      `${index < 0 ? where : `${where}[${index}]`}: the key is ${bytes} bytes as canonical JSON; at most ${MAX_KEY_BYTES} are allowed (a key identifies a row: keep data in the result)`,
    );
  }
}

const KIND_OF_PROTO: Partial<Record<AttributeType, AttributeKind>> = {
  [AttributeType.INT64]: "int64",
  [AttributeType.STRING]: "string",
  [AttributeType.DOUBLE]: "double",
  [AttributeType.BOOL]: "bool",
};

/**
 * The key attributes a column-form refresh declares (RefreshRequest.key_attributes), checked as
 * attributesOf checks a key's: names allowed, none twice, at most MAX_KEY_ATTRIBUTES, a type each.
 */
export function declaredAttributes(declared: readonly { name: string; type: AttributeType }[], where: string): KeyAttributes {
  if (declared.length === 0) throw new InvalidKeyError(`${where}: key_attributes is empty; name each key attribute and its type`);
  tooManyAttributes(declared.length, where);
  const out = declared.map(({ name, type }) => {
    checkAttributeName(name, where);
    const kind = KIND_OF_PROTO[type];
    if (kind === undefined) throw new InvalidKeyError(`${where}: attribute "${name}" has no type; set INT64, STRING, DOUBLE or BOOL`);
    return { name, type: kind };
  });
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 1; i < out.length; i++) {
    if (out[i]?.name === out[i - 1]?.name) throw new InvalidKeyError(`${where}: attribute "${out[i]?.name}" is named twice`);
  }
  return out;
}

/** An int64 in canonical form: a decimal string, no sign on zero, no leading zeros. */
const INT64_TEXT = /^(?:0|-?[1-9][0-9]{0,18})$/;
const INT64_MIN = -(2n ** 63n);
const INT64_END = 2n ** 63n;

/** The canonical JSON of one attribute value of a key in columns, or undefined when it is not of `type`. */
function canonicalJsonValue(type: AttributeKind, value: unknown): string | undefined {
  switch (type) {
    case "int64":
      if (typeof value !== "string" || !INT64_TEXT.test(value)) return undefined;
      if (value.length >= 19) {
        const n = BigInt(value);
        if (n < INT64_MIN || n >= INT64_END) return undefined;
      }
      return `"${value}"`;
    case "string":
      // Lone surrogates: a Value message cannot carry them (UTF-8), so neither does a key here.
      return typeof value === "string" && isWellFormed(value) ? JSON.stringify(value) : undefined;
    case "double":
      return typeof value === "number" && Number.isFinite(value) ? JSON.stringify(value) : undefined;
    case "bool":
      return typeof value === "boolean" ? (value ? "true" : "false") : undefined;
  }
}

/** What a parsed JSON value is, for error messages: "null", "an array", "object", "string", "number" or "boolean". */
export function jsonKindOf(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

/** String.prototype.isWellFormed (Node 20 has it; the ES2023 typings this build targets do not). */
function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** What a column-form value of `type` must look like, for error messages. */
const COLUMN_VALUE_FORM: Record<AttributeKind, string> = {
  int64: 'a decimal string within int64 (e.g. "42")',
  string: "a string (well-formed UTF-16)",
  double: "a finite number",
  bool: "true or false",
};

/**
 * Encodes a key of a column-form refresh (a member of keys_json, already parsed) against the
 * attributes the call declared: the same canonical JSON and hash as encodeKey gives the same key
 * as a Key message.
 */
export function encodeJsonKey(key: unknown, attributes: KeyAttributes, scheme: KeyHashScheme, where: string): EncodedKey {
  if (key === null || typeof key !== "object" || Array.isArray(key)) {
    throw new InvalidKeyError(`${where}: a key must be a JSON object of attribute values, got ${jsonKindOf(key)}`);
  }
  const record = key as Record<string, unknown>;
  let n = 0;
  for (const name in record) if (Object.hasOwn(record, name)) n++;
  if (n !== attributes.length) {
    throw new InvalidKeyError(`${where}: the key has ${n} attributes; key_attributes ${describe(attributes)} has ${attributes.length}`);
  }
  const prefixes = attributePrefixes(attributes);
  let json = "";
  for (let i = 0; i < attributes.length; i++) {
    const attr = attributes[i] as KeyAttributeDef;
    if (!Object.hasOwn(record, attr.name))
      throw new InvalidKeyError(`${where}: the key has no attribute "${attr.name}" of key_attributes ${describe(attributes)}`);
    const value = canonicalJsonValue(attr.type, record[attr.name]);
    if (value === undefined) throw new InvalidKeyError(`${where}: attribute "${attr.name}" is ${attr.type}: its value must be ${COLUMN_VALUE_FORM[attr.type]}`);
    json += prefixes[i] + value;
  }
  const first = attributes[0];
  return encodedKey(`${json}}`, scheme, first?.type, first === undefined ? false : (record[first.name] as string | number | boolean), where);
}

/**
 * A call's keys as refresh reads them: a batch at a time, in order. An array of encoded keys is one;
 * the keys of a canonical keys_json (encodeCanonicalKeysJson) are another, encoded when read.
 */
export interface EncodedKeyList {
  readonly length: number;
  /** The keys from `start` (0 or more) to `end` (the length when left out or past it), encoded. */
  slice(start: number, end?: number): EncodedKey[];
}

/** `keys` hashed again under `scheme` (rehashKey), a batch at a time as they are read. */
export function rehashKeys(keys: EncodedKeyList, attributes: KeyAttributes, scheme: KeyHashScheme): EncodedKeyList {
  return {
    length: keys.length,
    slice: (start, end) => keys.slice(start, end).map((k) => rehashKey(k, attributes, scheme)),
  };
}

/**
 * The keys of a column-form refresh's keys_json read without parsing it, when it is written
 * exactly as the SDK writes it: a JSON array with no spaces of keys already in canonical form
 * (attributes in `attributes`' order, values as encodeJsonKey writes them), so that each key's
 * text is its canonical JSON. Answers what encodeJsonKey gives for each; undefined for any other
 * text (another order, spaces, an escape in a string, a number in another spelling, an int64 of
 * 19 digits or more), which the caller then parses (and refuses with its message where it must).
 *
 * An empty array, or more than `maxKeys` keys, is left to the caller as well.
 *
 * Why: JSON.parse builds an object and a string per key that are thrown away at once, and a
 * 1,000-key refresh spent about a tenth of the server's CPU on that and the garbage it left.
 *
 * The whole text is read and every key's size checked here, so a key refused is refused before the
 * call writes anything; each key is hashed and made an EncodedKey only when refresh reads its batch
 * (CanonicalKeyList). Made all at once, a call's 10,000 keys lived as some 50,000 objects for the
 * whole call, and every young-generation collection copied those of the calls in flight: in a
 * 1,000,000-key refresh on MariaDB the server's collections took a fifth of its CPU.
 */
export function encodeCanonicalKeysJson(
  text: string,
  attributes: KeyAttributes,
  scheme: KeyHashScheme,
  where: string,
  maxKeys: number,
): EncodedKeyList | undefined {
  if (attributes.length === 0 || text.charCodeAt(0) !== LEFT_BRACKET || text.charCodeAt(1) === RIGHT_BRACKET) return undefined;
  const prefixes = attributePrefixes(attributes);
  const firstType = (attributes[0] as KeyAttributeDef).type;
  // The whole text is read before any key's size is checked, so a key refused for its size is
  // refused only when JSON.parse would have read the text too (the caller's messages come in its order).
  // Off the heap, so young-generation collections do not copy it while the call is in flight: sized
  // for the most keys the text can hold (the shortest key, `{"a":0}`, and its comma are 8 characters).
  let bounds = new Int32Array(Math.min(maxKeys, Math.ceil(text.length / 8)) * BOUNDS_PER_KEY);
  let count = 0;
  let at = 1;
  for (;;) {
    const start = at;
    let firstStart = 0;
    let firstEnd = 0;
    for (let i = 0; i < attributes.length; i++) {
      const prefix = prefixes[i] as string;
      if (!text.startsWith(prefix, at)) return undefined;
      at += prefix.length;
      const end = canonicalValueEnd(text, at, (attributes[i] as KeyAttributeDef).type);
      if (end < 0) return undefined;
      if (i === 0) {
        firstStart = at;
        firstEnd = end;
      }
      at = end;
    }
    // More keys than allowed (or than the bounds were sized for, which the text cannot hold) are left to the parse.
    if (text.charCodeAt(at) !== RIGHT_BRACE || count * BOUNDS_PER_KEY === bounds.length) return undefined;
    at++;
    const b = count++ * BOUNDS_PER_KEY;
    bounds[b] = start;
    bounds[b + 1] = at;
    bounds[b + 2] = firstStart;
    bounds[b + 3] = firstEnd;
    const next = text.charCodeAt(at++);
    if (next === RIGHT_BRACKET) break;
    if (next !== COMMA) return undefined;
  }
  if (at !== text.length) return undefined;
  bounds = bounds.subarray(0, count * BOUNDS_PER_KEY);
  for (let b = 0; b < bounds.length; b += BOUNDS_PER_KEY) checkKeySize(text, bounds[b] as number, bounds[b + 1] as number, where, b / BOUNDS_PER_KEY);
  return new CanonicalKeyList(text, bounds, scheme, firstType);
}

/** Per key of a CanonicalKeyList: where its JSON starts and ends in the text, and where its first attribute's value does. */
const BOUNDS_PER_KEY = 4;

/** The keys of a canonical keys_json, sizes checked, each hashed when read (encodeCanonicalKeysJson). */
class CanonicalKeyList implements EncodedKeyList {
  constructor(
    private readonly text: string,
    /** BOUNDS_PER_KEY numbers per key, in order. */
    private readonly bounds: Int32Array,
    private readonly scheme: KeyHashScheme,
    private readonly firstType: AttributeKind,
  ) {}

  get length(): number {
    return this.bounds.length / BOUNDS_PER_KEY;
  }

  slice(start: number, end = this.length): EncodedKey[] {
    const { text, bounds, scheme, firstType } = this;
    const from = Math.max(0, start);
    const to = Math.min(end, this.length);
    const keys = new Array<EncodedKey>(Math.max(0, to - from));
    for (let i = from; i < to; i++) {
      const b = i * BOUNDS_PER_KEY;
      const json = text.slice(bounds[b], bounds[b + 1]);
      const first = firstValue(text, bounds[b + 2] as number, bounds[b + 3] as number, firstType);
      keys[i - from] = { hash: keyHash(json, scheme, firstType, first), json };
    }
    return keys;
  }
}

const LEFT_BRACKET = 0x5b;
const RIGHT_BRACKET = 0x5d;
const RIGHT_BRACE = 0x7d;
const COMMA = 0x2c;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Where a value of `type` written as canonicalJsonValue writes it ends, reading from `at`; -1 when
 * the text there is not such a value (or is one this reading leaves to JSON.parse).
 */
function canonicalValueEnd(text: string, at: number, type: AttributeKind): number {
  switch (type) {
    case "int64": {
      // "0", or an optional minus and 1-18 digits without a leading zero: 19 digits may be out of range.
      if (text.charCodeAt(at) !== QUOTE) return -1;
      let i = at + 1;
      if (text.charCodeAt(i) === 0x2d) i++;
      const digits = i;
      while (isDigit(text.charCodeAt(i))) i++;
      const n = i - digits;
      if (n === 0 || n > 18 || (text.charCodeAt(digits) === 0x30 && (n > 1 || digits > at + 1)) || text.charCodeAt(i) !== QUOTE) return -1;
      return i + 1;
    }
    case "string": {
      // Only characters JSON.stringify writes as themselves: no escape, no lone surrogate.
      if (text.charCodeAt(at) !== QUOTE) return -1;
      for (let i = at + 1; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c === QUOTE) return i + 1;
        if (c < 0x20 || c === BACKSLASH) return -1;
        if (c >= 0xd800 && c <= 0xdfff) {
          if (c > 0xdbff || !isLowSurrogate(text.charCodeAt(i + 1))) return -1;
          i++;
        }
      }
      return -1;
    }
    case "double": {
      let i = at;
      for (let c = text.charCodeAt(i); isDigit(c) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65; c = text.charCodeAt(++i));
      const spelled = text.slice(at, i);
      // Canonical: the number's own JSON spelling (so not "-0", "1.0" or "1E3").
      return spelled !== "" && JSON.stringify(Number(spelled)) === spelled ? i : -1;
    }
    case "bool":
      return text.startsWith("true", at) ? at + 4 : text.startsWith("false", at) ? at + 5 : -1;
  }
}

/** The first attribute's value as encodeJsonKey hashes it, from its canonical text at [at, end). */
function firstValue(text: string, at: number, end: number, type: AttributeKind): string | number | boolean {
  switch (type) {
    case "int64":
    case "string":
      return text.slice(at + 1, end - 1);
    case "double":
      return Number(text.slice(at, end));
    case "bool":
      return end - at === 4;
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** A stored key hashed again under `scheme` (a refresh whose keys were hashed for another). */
export function rehashKey(key: EncodedKey, attributes: KeyAttributes, scheme: KeyHashScheme): EncodedKey {
  const first = attributes[0];
  const value = first === undefined ? false : ((JSON.parse(key.json) as Record<string, string | number | boolean>)[first.name] as string | number | boolean);
  return { json: key.json, hash: keyHash(key.json, scheme, first?.type, value) };
}

/** `{"a":`, `,"b":`, …: the canonical JSON before each attribute's value, made once per table definition. */
const prefixCache = new WeakMap<KeyAttributes, string[]>();
function attributePrefixes(attributes: KeyAttributes): string[] {
  let prefixes = prefixCache.get(attributes);
  if (prefixes === undefined) {
    prefixes = attributes.map((a, i) => `${i === 0 ? "{" : ","}${JSON.stringify(a.name)}:`);
    prefixCache.set(attributes, prefixes);
  }
  return prefixes;
}

/** Like attributesOf, for error messages: never throws. */
function attributesOfLoose(key: Key): KeyAttributes {
  return Object.keys(key.attributes)
    .sort()
    .map((name) => {
      const c = (key.attributes[name] as Value).kind.case;
      return { name: name.slice(0, 64), type: c === undefined ? ("unset" as AttributeKind) : KIND_OF_CASE[c] };
    });
}

/** A key's hash under `scheme` (crypto.hash: a third of createHash's cost on a key, which refresh pays per key). */
function keyHash(json: string, scheme: KeyHashScheme, firstType: AttributeKind | undefined, first: string | number | boolean): string {
  if (scheme === "sha256") return hash("sha256", json, "hex").slice(0, 32);
  return orderedHash(firstType, first, hash("sha256", json, "hex"));
}

const TWO_30 = 2 ** 30;
const TWO_34 = 2 ** 34;
/** A double's bits, read as two unsigned 32-bit halves. */
const scratch = new DataView(new ArrayBuffer(8));

/**
 * The "ordered" scheme's hash: 12 base-32 digits, then the first 20 hex digits of `digest` (the
 * key's SHA-256). The digits are the top 60 bits of a 64-bit number that orders the values of the
 * attribute's type (int64 offset by 2^63; a double's bits with the sign bit flipped, or all bits
 * for negatives; a string's first 8 UTF-8 bytes; false, true), as two 30-bit halves of 6 digits
 * each. Base 32's digits 0-9a-v sort as their values in ASCII.
 */
function orderedHash(type: AttributeKind | undefined, value: string | number | boolean, digest: string): string {
  let high = 0;
  let low = 0;
  switch (type) {
    case "int64": {
      const text = value as string;
      if (text.length <= 15) {
        // Exact as a double: n + 2^63 = 2^63 + n, split without leaving 53 bits.
        const n = Number(text);
        high = 2 ** 29 + Math.floor(n / TWO_34);
        low = (((Math.floor(n / 16) % TWO_30) + TWO_30) % TWO_30) >>> 0;
      } else {
        const u = (BigInt(text) + (1n << 63n)) >> 4n;
        high = Number(u >> 30n);
        low = Number(u & 0x3fffffffn);
      }
      break;
    }
    case "double": {
      // + 0 makes -0 into 0: both are the key whose canonical JSON says 0, so they must hash alike.
      scratch.setFloat64(0, (value as number) + 0);
      let hi = scratch.getUint32(0);
      let lo = scratch.getUint32(4);
      if (hi >>> 31 === 1) {
        hi = ~hi >>> 0;
        lo = ~lo >>> 0;
      } else hi = (hi | 0x80000000) >>> 0;
      [high, low] = top60(hi, lo);
      break;
    }
    case "string": {
      const bytes = Buffer.from((value as string).slice(0, 8), "utf8");
      const at = (i: number) => bytes[i] ?? 0;
      [high, low] = top60(((at(0) << 24) | (at(1) << 16) | (at(2) << 8) | at(3)) >>> 0, ((at(4) << 24) | (at(5) << 16) | (at(6) << 8) | at(7)) >>> 0);
      break;
    }
    case "bool":
      high = value === true ? 1 : 0;
      break;
    case undefined:
      break;
  }
  // One flat string of 32 characters, written in one go: the prefix's digits and the digest's
  // first 20. Joined with + and slice, each hash of a refresh's keys was four strings (the
  // digits, the digest, a slice holding all 64 of its characters, and the join), kept while
  // the call ran.
  for (let i = 0; i < 6; i++) {
    const shift = 25 - 5 * i;
    hashCodes[i] = BASE32_CODES[(high >>> shift) & 31] as number;
    hashCodes[6 + i] = BASE32_CODES[(low >>> shift) & 31] as number;
  }
  for (let i = 0; i < 20; i++) hashCodes[12 + i] = digest.charCodeAt(i);
  return String.fromCharCode(...hashCodes);
}

/** The char codes of base 32's digits, 0-9a-v, as Number.prototype.toString(32) writes them. */
const BASE32_CODES = Array.from("0123456789abcdefghijklmnopqrstuv", (c) => c.charCodeAt(0));
/** The "ordered" hash's 32 char codes, filled per key. */
const hashCodes: number[] = new Array(32).fill(0);

/** The top 60 bits of the 64-bit number `hi`·2^32 + `lo`, as two 30-bit halves. */
function top60(hi: number, lo: number): [number, number] {
  return [hi >>> 2, (((hi & 3) << 28) | (lo >>> 4)) >>> 0];
}

/** Decodes a stored canonical key JSON into a protobuf Key. */
export function decodeKey(json: string, attributes: KeyAttributes): Key {
  const raw = JSON.parse(json) as Record<string, string | number | boolean>;
  // Message literals, not create(): a Reserve answers up to 1,000 keys, and create()'s reflection
  // over the schema cost more than the rest of the key's conversion. Key and Value have no other fields.
  const values: Record<string, Value> = {};
  for (const attr of attributes) {
    const v = raw[attr.name];
    let kind: Value["kind"];
    switch (attr.type) {
      case "int64":
        kind = { case: "intValue", value: BigInt(v as string) };
        break;
      case "string":
        kind = { case: "stringValue", value: v as string };
        break;
      case "double":
        kind = { case: "doubleValue", value: v as number };
        break;
      case "bool":
        kind = { case: "boolValue", value: v as boolean };
        break;
    }
    values[attr.name] = { $typeName: "populus.v1.Value", kind };
  }
  return { $typeName: "populus.v1.Key", attributes: values };
}

/**
 * Turns a restriction (attribute name to value) into conditions on the
 * canonical JSON, checked against the table's attributes.
 */
export function encodeRestriction(restriction: { [name: string]: Value }, attributes: KeyAttributes, where: string): AttributeCondition[] {
  return Object.keys(restriction)
    .sort()
    .map((name) => {
      const attr = attributes.find((a) => a.name === name);
      if (attr === undefined) {
        throw new InvalidKeyError(`${where}: restriction names "${name.slice(0, 80)}", which is not a key attribute of ${describe(attributes)}`);
      }
      const c = canonicalValue(name, restriction[name] as Value, where);
      if (c.kind !== attr.type) {
        throw new InvalidKeyError(`${where}: restriction gives "${name}" a ${c.kind} value; the attribute is ${attr.type}`);
      }
      return { name, type: attr.type, value: c.json };
    });
}
