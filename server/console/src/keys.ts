/**
 * Keys as the console shows and takes them: `subject_id=3, session=2026-11-01`. Typed in, each
 * value is read as the type the table fixed for its attribute, so a filter or a key to ignore
 * that does not fit the table is refused on the page with the reason, before any call.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { AttributeType, type Key, type KeyAttribute, KeySchema, type Value, type ValueSchema } from "@populus/sdk/gen/populus/v1/types_pb.js";

type ValueInit = MessageInitShape<typeof ValueSchema>;

/** One value as text: strings quoted only when they would read as something else. */
function valueText(v: Value | undefined): string {
  const kind = v?.kind;
  switch (kind?.case) {
    case "intValue":
      return kind.value.toString();
    case "doubleValue":
      return String(kind.value);
    case "boolValue":
      return String(kind.value);
    case "stringValue":
      return /^[\w.:/@+-]+$/.test(kind.value) ? kind.value : JSON.stringify(kind.value);
    default:
      return "?";
  }
}

/** A key as `a=1, b=x`, attributes in name order (the order the table fixed). */
export function keyText(key: Key | undefined): string {
  if (key === undefined) return "";
  return Object.keys(key.attributes)
    .sort()
    .map((name) => `${name}=${valueText(key.attributes[name])}`)
    .join(", ");
}

/** A typed-in key or filter that does not fit the table. */
export class KeyInputError extends Error {
  override readonly name = "KeyInputError";
}

/**
 * Splits `a=1, b="x, y"` at the commas outside double quotes (keyText quotes a string that
 * holds a comma, so what the page writes it can read back).
 */
function splitAttributes(text: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted && c === "\\") i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (quoted) throw new KeyInputError(`${text.trim()}: a quoted value has no closing "`);
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

/** A string value: as typed, or the JSON string it is when quoted. */
function unquote(text: string, where: string): string {
  if (!text.startsWith('"')) return text;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "string") return value;
  } catch {
    // answered below
  }
  throw new KeyInputError(`${where}: a quoted value is a JSON string, e.g. "a, b"`);
}

function parseValue(attribute: KeyAttribute, text: string): ValueInit {
  const where = `${attribute.name}=${text}`;
  switch (attribute.type) {
    case AttributeType.INT64:
      if (!/^-?\d+$/.test(text)) throw new KeyInputError(`${where}: ${attribute.name} is an integer`);
      return { kind: { case: "intValue", value: BigInt(text) } };
    case AttributeType.DOUBLE: {
      const n = Number(text);
      if (text === "" || !Number.isFinite(n)) throw new KeyInputError(`${where}: ${attribute.name} is a finite number`);
      return { kind: { case: "doubleValue", value: n } };
    }
    case AttributeType.BOOL:
      if (text !== "true" && text !== "false") throw new KeyInputError(`${where}: ${attribute.name} is true or false`);
      return { kind: { case: "boolValue", value: text === "true" } };
    default:
      return { kind: { case: "stringValue", value: unquote(text, where) } };
  }
}

/**
 * Reads `a=1, b=x` into attribute values. Every attribute named must be one of the table's;
 * `complete` also requires every one of them (a whole key, not a filter).
 */
export function parseKeyText(text: string, attributes: readonly KeyAttribute[], complete: boolean): Record<string, ValueInit> {
  const answer: Record<string, ValueInit> = {};
  const names = attributes.map((a) => a.name);
  for (const part of splitAttributes(text)) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) throw new KeyInputError(`"${part}": write attribute=value (attributes: ${names.join(", ")})`);
    const name = part.slice(0, eq).trim();
    const attribute = attributes.find((a) => a.name === name);
    if (attribute === undefined) throw new KeyInputError(`"${name}" is not a key attribute of this table (attributes: ${names.join(", ")})`);
    if (name in answer) throw new KeyInputError(`${name} is given twice`);
    answer[name] = parseValue(attribute, part.slice(eq + 1).trim());
  }
  if (complete) {
    const missing = names.filter((n) => !(n in answer));
    if (missing.length > 0) throw new KeyInputError(`"${text.trim()}" lacks ${missing.join(", ")}: a key names every attribute (${names.join(", ")})`);
  }
  return answer;
}

/** Whole keys, one per line, for Ignore and DeleteTargets. */
export function parseKeyLines(text: string, attributes: readonly KeyAttribute[]): Key[] {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  if (lines.length === 0) throw new KeyInputError("give at least one key, one per line");
  return lines.map((line, i) => {
    try {
      return create(KeySchema, { attributes: parseKeyText(line, attributes, true) });
    } catch (err) {
      throw err instanceof KeyInputError ? new KeyInputError(`line ${i + 1}: ${err.message}`) : err;
    }
  });
}
