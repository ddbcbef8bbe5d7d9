/**
 * server/src/key-codec.ts encodeCanonicalKeysJson: a column-form refresh's keys_json, as the SDK
 * writes it (client-sdk RefreshKeys), read without JSON.parse gives exactly what parsing it and
 * encodeJsonKey give, under both hash schemes; any other text is left to the parse (undefined),
 * so that the server's checks and messages stay the parse's own.
 */
import test from "ava";
import { RefreshKeys } from "../client-sdk/dist/keys.js";
import { declaredAttributes, encodeCanonicalKeysJson, encodeJsonKey, type KeyAttributes, type KeyHashScheme } from "../server/dist/key-codec.js";

const SCHEMES: KeyHashScheme[] = ["sha256", "ordered"];
const MAX = 10_000;

/** keys_json and the declared attributes of `keys` as the SDK sends them in columns. */
function sdkColumns(keys: readonly Record<string, unknown>[]): { text: string; attributes: KeyAttributes } {
  const columns = new RefreshKeys();
  for (const k of keys) columns.add(k);
  const { keysJson, keyAttributes } = columns.fields();
  if (keysJson === "") throw new Error("the SDK sent these keys as Key messages, not in columns");
  return { text: keysJson, attributes: declaredAttributes(keyAttributes, "test") };
}

/** What the server's parsing path gives for `text`. */
function parsed(text: string, attributes: KeyAttributes, scheme: KeyHashScheme) {
  return (JSON.parse(text) as unknown[]).map((k, i) => encodeJsonKey(k, attributes, scheme, `Refresh keys_json[${i}]`));
}

function agreesWithParse(t: import("ava").ExecutionContext, keys: readonly Record<string, unknown>[], label: string): void {
  const { text, attributes } = sdkColumns(keys);
  for (const scheme of SCHEMES) {
    const read = encodeCanonicalKeysJson(text, attributes, scheme, "Refresh keys_json", MAX);
    t.not(read, undefined, `${label} (${scheme}): the SDK's text is read without parsing`);
    const expected = parsed(text, attributes, scheme);
    t.is(read?.length, expected.length);
    t.deepEqual(read?.slice(0), expected, `${label} (${scheme}): the same canonical JSON and hash as the parse`);
    // Refresh reads the keys a batch at a time, each batch hashed as it is read.
    const middle = Math.floor(expected.length / 2);
    t.deepEqual(read?.slice(0, middle), expected.slice(0, middle), `${label} (${scheme}): a first batch`);
    t.deepEqual(read?.slice(middle, expected.length + 5), expected.slice(middle), `${label} (${scheme}): the last batch, asked past the end`);
    t.deepEqual(read?.slice(expected.length), [], `${label} (${scheme}): nothing past the end`);
  }
}

test("the SDK's keys of each attribute type read as the parse reads them", (t) => {
  agreesWithParse(
    t,
    [0, 1, -1, 42, 2 ** 53 - 1, -(2 ** 53 - 1), 123_456_789_012].map((id) => ({ id })),
    "int64 numbers",
  );
  agreesWithParse(
    t,
    ["0", "-7", "999999999999999999", "-999999999999999999"].map((id) => ({ id: BigInt(id) })),
    "int64 bigints of up to 18 digits",
  );
  agreesWithParse(
    t,
    ["", "a", "2026-11-01", "ré", "日本語", "🧪 test", "tab\u007fdel", "\u2028\u2029", "'single' and `back`"].map((s) => ({ s })),
    "strings with no escape",
  );
  // The SDK sends integral numbers as int64: its doubles have a fraction.
  agreesWithParse(
    t,
    [0.5, -1.25, 1.5e-7, 123.456, -Number.MIN_VALUE, 0.1 + 0.2, 2.5e-300].map((x) => ({ x })),
    "doubles",
  );
  agreesWithParse(t, [{ b: true }, { b: false }], "booleans");
  agreesWithParse(
    t,
    Array.from({ length: 1000 }, (_, i) => ({ subject: `s${i % 7}`, session: i, z_weight: (i + 0.5) / 8, active: i % 2 === 0 })),
    "1,000 keys of four attributes, in the SDK's order",
  );
});

test("random keys read as the parse reads them", (t) => {
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const chars = ["a", "Z", "0", " ", "é", "ß", "日", "🧪", "-", ":", "/", "\u00a0"];
  for (let round = 0; round < 20; round++) {
    const keys = Array.from({ length: 50 }, () => ({
      n: BigInt(Math.floor((random() - 0.5) * 2 ** 52)),
      name: Array.from({ length: Math.floor(random() * 12) }, () => chars[Math.floor(random() * chars.length)]).join(""),
      v: (random() - 0.5) * 10 ** Math.floor(random() * 20 - 22),
    }));
    agreesWithParse(t, keys, `round ${round}`);
  }
});

test("canonical text of values the SDK does not send as doubles reads as the parse reads it", (t) => {
  const dbl = declaredAttributes([{ name: "x", type: 3 }], "test");
  const text = `[${[1e21, -1e21, Number.MAX_VALUE, 5, 0, -3, 1e-7].map((x) => `{"x":${JSON.stringify(x)}}`).join(",")}]`;
  for (const scheme of SCHEMES) t.deepEqual(encodeCanonicalKeysJson(text, dbl, scheme, "Refresh keys_json", MAX)?.slice(0), parsed(text, dbl, scheme), scheme);
});

test("text the SDK would not write is left to the parse", (t) => {
  const int = declaredAttributes([{ name: "id", type: 1 }], "test");
  const str = declaredAttributes([{ name: "s", type: 2 }], "test");
  const dbl = declaredAttributes([{ name: "x", type: 3 }], "test");
  const two = declaredAttributes(
    [
      { name: "a", type: 1 },
      { name: "b", type: 1 },
    ],
    "test",
  );
  const cases: [string, KeyAttributes, string][] = [
    ["[]", int, "an empty array"],
    ['[{"id":"1"}', int, "no closing bracket"],
    ['[{"id":"1"}] ', int, "a trailing space"],
    ['[{"id":"1"},]', int, "a trailing comma"],
    ['[ {"id":"1"}]', int, "a space"],
    ['[{"id": "1"}]', int, "a space after the colon"],
    ['[{"id":1}]', int, "an int64 as a JSON number"],
    ['[{"id":"01"}]', int, "an int64 with a leading zero"],
    ['[{"id":"-0"}]', int, "an int64 minus zero"],
    ['[{"id":"+1"}]', int, "an int64 with a plus sign"],
    ['[{"id":"1234567890123456789"}]', int, "an int64 of 19 digits (its range is the parse's to check)"],
    ['[{"id":""}]', int, "an empty int64"],
    ['[{"id":"1","x":"2"}]', int, "an extra attribute"],
    ['[{"b":"1","a":"2"}]', two, "attributes out of order"],
    ['[{"a":"1"}]', two, "a missing attribute"],
    ['[{"s":"a\\nb"}]', str, "a string with an escape"],
    ['[{"s":"\\u0041"}]', str, "a string with a unicode escape"],
    ['[{"s":"\ud800"}]', str, "a lone high surrogate"],
    ['[{"s":"\udc00x"}]', str, "a lone low surrogate"],
    ['[{"s":"tab\there"}]', str, "a raw control character"],
    ['[{"s":"open}]', str, "an unterminated string"],
    ['[{"x":1.0}]', dbl, "a double as 1.0"],
    ['[{"x":-0}]', dbl, "a double minus zero"],
    ['[{"x":1E3}]', dbl, "a double with a capital exponent"],
    ['[{"x":1e400}]', dbl, "a double out of range"],
    ['[{"x":"1"}]', dbl, "a double as a string"],
    ['{"id":"1"}', int, "an object, not an array"],
  ];
  for (const [text, attributes, label] of cases) {
    t.is(encodeCanonicalKeysJson(text, attributes, "ordered", "Refresh keys_json", MAX), undefined, label);
  }
  const three = sdkColumns([{ id: 1 }, { id: 2 }, { id: 3 }]);
  t.is(encodeCanonicalKeysJson(three.text, three.attributes, "ordered", "Refresh keys_json", 2), undefined, "more keys than allowed: the parse says how many");
  t.is(encodeCanonicalKeysJson(three.text, three.attributes, "ordered", "Refresh keys_json", 3)?.length, 3, "as many as allowed are read");
});

test("a key too long is refused as the parse refuses it, naming its place", (t) => {
  const { text, attributes } = sdkColumns([{ s: "short" }, { s: "x".repeat(5000) }]);
  const fromScan = t.throws(() => encodeCanonicalKeysJson(text, attributes, "ordered", "Refresh keys_json", MAX));
  const fromParse = t.throws(() => parsed(text, attributes, "ordered"));
  t.is(fromScan?.message, fromParse?.message);
  t.regex(fromScan?.message ?? "", /keys_json\[1\]/);
});

/**
 * A key's "ordered" hash is stored with its job and its result, and found again by it: the same
 * key must hash the same in every version, or a refresh would queue a computed key again and a
 * Complete would miss its job. Pinned to what the code wrote before 0741cb5 (which builds it in
 * one string instead of joining the digits and a slice of the digest), for each attribute type,
 * its extremes, -0, multi-byte strings and a key of two attributes.
 */
const PINNED_ORDERED_HASHES: [attributes: string, key: Record<string, unknown>, hash: string][] = [
  ["id:int64", { id: "0" }, "g0000000000014a36ef36b60cfbe345a"],
  ["id:int64", { id: "1" }, "g000000000005811967f540d300d249a"],
  ["id:int64", { id: "-1" }, "fvvvvvvvvvvvc647ea03d8590062ef1b"],
  ["id:int64", { id: "123456789012345" }, "g0070i461nfn2b9de6a5d84cf0ede1c7"],
  ["id:int64", { id: "-999999999999999" }, "fvu750ar76004b78ac482fbf5109e890"],
  ["id:int64", { id: "9223372036854775807" }, "vvvvvvvvvvvva2a19adcc85f8c682926"],
  ["id:int64", { id: "-9223372036854775808" }, "0000000000001a8c0b049c26cc3dba84"],
  ["x:double", { x: 0 }, "g000000000005bff452c5ed93f2e87a2"],
  ["x:double", { x: -0 }, "g000000000005bff452c5ed93f2e87a2"],
  ["x:double", { x: 2.5 }, "o0200000000025b934393cfa55ee8731"],
  ["x:double", { x: -1e-300 }, "fpd93o1t0s6a3c1df932773e46399834"],
  ["x:double", { x: 1.7976931348623157e308 }, "vvnvvvvvvvvv64c55aaa5fdffd5b3113"],
  ["s:string", { s: "" }, "0000000000006f600f2520d1f84f5905"],
  ["s:string", { s: "subject-042" }, "edqm4qj5cdq21ed1e4cb18147f18c4b3"],
  ["s:string", { s: "日本語" }, "sqbqbpksljka6d6762aeb680c66a0b27"],
  ["s:string", { s: "😀x" }, "u2fph03o0000e1e4949a9dd6b873fbdf"],
  ["b:bool", { b: false }, "0000000000007d1ec4641ee2937691ed"],
  ["b:bool", { b: true }, "000001000000fc0f22db8e47986f86d5"],
  ["session:int64,subject:string", { session: "7", subject: "mouse-3" }, "g00000000000b4af1b71146a3eb7ad4c"],
];

test("the ordered hash of a key is the one earlier versions stored", (t) => {
  for (const [spec, key, hash] of PINNED_ORDERED_HASHES) {
    const attributes = spec.split(",").map((a) => {
      const [name, type] = a.split(":") as [string, KeyAttributes[number]["type"]];
      return { name, type };
    });
    t.is(encodeJsonKey(key, attributes, "ordered", "test").hash, hash, `${spec} ${JSON.stringify(key)}`);
  }
});
