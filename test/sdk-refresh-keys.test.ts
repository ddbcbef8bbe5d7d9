/**
 * client-sdk/src/keys.ts RefreshKeys: one Refresh call's keys, in columns (keys_json) while they
 * share the first key's attributes and types, as Key messages from the first one that does not.
 * The keys already taken in columns are not kept as the caller's objects: they are read back from
 * their JSON, and must make Key messages equal to the objects' (the same attribute map).
 */
import test from "ava";
import { RefreshKeys, toProtoKey } from "../client-sdk/dist/keys.js";

/** The fields of a RefreshKeys that took `keys`, one by one. */
function fieldsOf(keys: readonly unknown[]) {
  const columns = new RefreshKeys();
  for (const k of keys) columns.add(k);
  return { length: columns.length, ...columns.fields() };
}

const EVERY_TYPE = [
  { a_int: 0, b_big: 2n ** 60n, c_dbl: 0.5, d_str: 'ü " \\ 😀', e_bool: true },
  { a_int: -(2 ** 53 - 1), b_big: -(2n ** 63n), c_dbl: -1e-7, d_str: "", e_bool: false },
  { a_int: 2 ** 53 - 1, b_big: 2n ** 63n - 1n, c_dbl: 123.456, d_str: "x".repeat(100), e_bool: true },
  // Attributes not in name order: the messages rebuilt from the JSON list them sorted, the same map.
  { e_bool: false, d_str: "\u2028 \t", c_dbl: -0.25, b_big: 3n, a_int: 7 },
];

test("keys of one shape go in columns: their canonical JSON, attributes sorted by name, and the attribute types", (t) => {
  const { keys, keysJson, keyAttributes, length } = fieldsOf([
    { id: 1, name: "a" },
    { name: "b", id: 2n },
  ]);
  t.is(length, 2);
  t.deepEqual(keys, []);
  t.is(keysJson, '[{"id":"1","name":"a"},{"id":"2","name":"b"}]');
  t.deepEqual(
    keyAttributes.map((a) => [a.name, a.type]),
    [
      ["id", 1],
      ["name", 2],
    ],
  );
});

test("a key of another shape turns the call into Key messages, the keys taken before it the same as if sent so from the start", (t) => {
  const strangers: unknown[] = [{ a_int: 1 }, { ...EVERY_TYPE[0], a_int: "1" }, { ...EVERY_TYPE[0], c_dbl: 2 }, { ...EVERY_TYPE[0], f_more: 1 }];
  for (const stranger of strangers) {
    const all = [...EVERY_TYPE, stranger];
    const { keys, keysJson, keyAttributes, length } = fieldsOf(all);
    t.is(length, all.length);
    t.is(keysJson, "");
    t.deepEqual(keyAttributes, []);
    t.deepEqual(
      keys,
      all.map(toProtoKey),
      JSON.stringify(stranger, (_, v) => (typeof v === "bigint" ? `${v}n` : v)),
    );
  }
});

test("keys after the first stranger are Key messages too, whatever their shape", (t) => {
  const all = [{ id: 1 }, { id: "one" }, { id: 2 }];
  const { keys, keysJson } = fieldsOf(all);
  t.is(keysJson, "");
  t.deepEqual(keys, all.map(toProtoKey));
});

test("a key that is no key at all is refused as toProtoKey refuses it, in columns or not", (t) => {
  const columns = new RefreshKeys();
  columns.add({ id: 1 });
  t.throws(() => columns.add({ id: Number.NaN }), { message: 'key attribute "id": NaN is not a finite number' });
  t.is(columns.length, 1, "the refused key was not taken");
  t.is(columns.fields().keysJson, '[{"id":"1"}]');
  t.throws(() => columns.add(null), { message: /a key must be an object/ });
  const messages = new RefreshKeys();
  messages.add({ id: 1 });
  messages.add({ id: "one" });
  t.throws(() => messages.add({ id: 2 ** 60 }), { message: /beyond 2\^53/ });
});
