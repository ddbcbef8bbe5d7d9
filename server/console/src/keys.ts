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

function parseValue(attribute: KeyAttribute, text: string): ValueInit {
  const where = `${attribute.name}=${text}`;
  const unquoted = /^".*"$/.test(text) ? (JSON.parse(text) as string) : text;
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
      return { kind: { case: "stringValue", value: unquoted } };
  }
}

/**
 * Reads `a=1, b=x` into attribute values. Every attribute named must be one of the table's;
 * `complete` also requires every one of them (a whole key, not a filter).
 */
export function parseKeyText(text: string, attributes: readonly KeyAttribute[], complete: boolean): Record<string, ValueInit> {
  const answer: Record<string, ValueInit> = {};
  const names = attributes.map((a) => a.name);
  for (const part of text.split(",").map((p) => p.trim())) {
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
