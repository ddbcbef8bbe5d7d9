/**
 * The change log's stored events, read back as groups (server/src/store/change-log.ts): the keys
 * of each group are cut out of the stored text without parsing them, and must come out exactly as
 * parsing and re-serializing them does, whatever the worker ids, messages and keys hold (keys are
 * stored as canonical JSON, as JSON.stringify writes them: key-codec.ts).
 */
import test from "ava";
import { Change, parseChangeRow, storedGroups } from "../server/dist/store/change-log.js";

/** The groups as the parse-and-stringify path gives them (the reference). */
function parsedGroups(events: string) {
  const stored = JSON.parse(events) as { s: string; w: string; c: 0 | 1; k: unknown[]; e?: string[] }[];
  return stored.map((g) => ({ status: g.s, workerId: g.w, committed: g.c === 1, keysJson: JSON.stringify(g.k), size: g.k.length, errorMessages: g.e ?? [] }));
}

const awkward = [
  '{"id":1}',
  '{"name":"a]b}c,d"}',
  '{"name":"quote \\" and backslash \\\\ and ,\\"k\\":[ inside"}',
  '{"name":"été \u{1F600}","n":-2500}',
  '{"a":[1,[2,{"b":"]"}]],"c":null,"d":true}',
];

test("groups cut from the stored text equal the parsed ones, for any worker id, message and key", (t) => {
  const change = new Change()
    .move("pending", "reserved", 5)
    .jobs("reserved", awkward, { workerId: 'worker ,"k":[ "quoted" \\ ]}' })
    .jobs("error", ['{"id":2}', '{"id":3}'], { workerId: "w2", errorMessages: ['boom ,"k":[1] }', 'line\nbreak \\ "q"'] })
    .jobs("deleted", ['{"id":4}'], { committed: true });
  const { events } = change.columns();
  const cut = storedGroups(events);
  t.deepEqual(cut, parsedGroups(events));
  t.deepEqual(
    cut?.map((g) => g.size),
    [5, 2, 1],
  );
  t.is(cut?.[0]?.keysJson, `[${awkward.join(",")}]`, "the keys are the stored text itself");

  const row = parseChangeRow({ id: "7", table_name: "t", time: "1000", deltas: change.columns().deltas, events });
  t.deepEqual(row.groups, parsedGroups(events), "a change row's groups come from the cut");
  t.is(row.events.length, 8, "the events one by one still parse");
});

test("an empty change log row has no groups; a shape Change.jobs does not write is left to the parser", (t) => {
  t.deepEqual(storedGroups("[]"), []);
  // As MySQL's JSON type would give it back: spaces, keys reordered.
  const normalized = '[{"c": 0, "k": [{"id": 1}], "s": "reserved", "w": "w"}]';
  t.is(storedGroups(normalized), null);
  const row = parseChangeRow({ id: 1, table_name: "t", time: 1, deltas: "{}", events: normalized });
  t.deepEqual(row.groups, [{ status: "reserved", workerId: "w", committed: false, keysJson: '[{"id":1}]', size: 1, errorMessages: [] }]);
  for (const broken of ['[{"s":"reserved","w":"","c":0,"k":[{"id":1}]', '[{"s":"x","k":[1]},', "{}", '[{"s":"x","w":"","c":0,"k":[1]}]x']) {
    t.is(storedGroups(broken), null, broken);
  }
});
