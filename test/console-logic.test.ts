/**
 * The console's logic that needs no browser: the pace of a table (jobs/s, the chart's bars, the
 * ETA) from the counts its Watch stream brings, and keys as the page writes and reads them.
 */
import test from "ava";
import { AttributeType, type KeyAttribute } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { KeyInputError, keyText, parseKeyLines, parseKeyText } from "../server/console/src/keys.js";
import { type Counts, Throughput } from "../server/console/src/throughput.js";

const counts = (target: number, error = 0, pending = 0): Counts => ({ pending, reserved: 0, success: 0, error, ignore: 0, target });
const T0 = 1_800_000_000_000;

test("jobs/s counts results committed and makes failed over the window, never less than zero", (t) => {
  const pace = new Throughput();
  pace.record(counts(100, 5), T0);
  t.is(pace.rate(60_000, T0 + 1000), undefined, "too little seen yet");
  pace.record(counts(130, 5), T0 + 10_000);
  pace.record(counts(140, 15), T0 + 20_000);
  // 50 finished (40 committed, 10 failed) in 20 s.
  t.is(pace.rate(60_000, T0 + 20_000), 2.5);
  // Deleting computed rows and errors is no negative pace.
  pace.record(counts(0, 0), T0 + 25_000);
  t.is(pace.rate(60_000, T0 + 25_000), 2);
  // Over the last 10 s only: 20 finished between T0+10 s and T0+20 s, nothing since.
  t.is(pace.rate(10_000, T0 + 20_000), 2);
  t.is(pace.rate(10_000, T0 + 40_000), 0);
});

test("the chart's bars: null before watching began, then jobs/s per bar", (t) => {
  const pace = new Throughput();
  pace.record(counts(0), T0);
  pace.record(counts(50), T0 + 5_000);
  pace.record(counts(60), T0 + 15_000);
  t.deepEqual(pace.buckets(4, 10_000, T0 + 20_000), [null, null, 5, 1]);
});

test("the ETA: remaining jobs at the last minute's pace; 0 when none remain; undefined when idle", (t) => {
  const pace = new Throughput();
  pace.record(counts(0, 0, 100), T0);
  pace.record(counts(40, 0, 60), T0 + 20_000);
  t.is(pace.eta(60, T0 + 20_000), 30);
  t.is(pace.eta(0, T0 + 20_000), 0);
  t.is(pace.eta(60, T0 + 200_000), undefined, "nothing finished in the last minute");
});

const attributes: KeyAttribute[] = [
  { name: "subject_id", type: AttributeType.INT64 },
  { name: "session", type: AttributeType.STRING },
  { name: "rate", type: AttributeType.DOUBLE },
  { name: "sorted", type: AttributeType.BOOL },
] as KeyAttribute[];

test("a typed key or filter is read as the table's attribute types", (t) => {
  t.deepEqual(parseKeyText(" subject_id=-3, session=2026-11-01 ", attributes, false), {
    subject_id: { kind: { case: "intValue", value: -3n } },
    session: { kind: { case: "stringValue", value: "2026-11-01" } },
  });
  t.deepEqual(parseKeyText('session="a, b \\"c\\""', attributes, false), { session: { kind: { case: "stringValue", value: 'a, b "c"' } } }, "quoted, as JSON");
  t.deepEqual(parseKeyText("rate=0.5, sorted=true", attributes, false), {
    rate: { kind: { case: "doubleValue", value: 0.5 } },
    sorted: { kind: { case: "boolValue", value: true } },
  });
  t.deepEqual(parseKeyText("", attributes, false), {}, "an empty filter is no filter");
  const [key] = parseKeyLines("subject_id=3, session=x y, rate=1, sorted=false\n\n", attributes);
  t.is(keyText(key), 'rate=1, session="x y", sorted=false, subject_id=3');
  // What the page writes, it reads back.
  const [odd] = parseKeyLines('subject_id=9, session="a, \\"b\\"", rate=-0.25, sorted=true', attributes);
  const [again] = parseKeyLines(keyText(odd), attributes);
  t.is(keyText(again), keyText(odd));
  t.is(keyText(odd), 'rate=-0.25, session="a, \\"b\\"", sorted=true, subject_id=9');
});

test("a typed key that does not fit the table is refused with the reason", (t) => {
  const refused = (text: string, complete = false) => t.throws(() => parseKeyText(text, attributes, complete), { instanceOf: KeyInputError })?.message;
  t.is(refused("subject_id=3.5"), "subject_id=3.5: subject_id is an integer");
  t.is(refused("rate=fast"), "rate=fast: rate is a finite number");
  t.is(refused("sorted=yes"), "sorted=yes: sorted is true or false");
  t.is(refused("animal=cat"), '"animal" is not a key attribute of this table (attributes: subject_id, session, rate, sorted)');
  t.is(refused("subject_id"), '"subject_id": write attribute=value (attributes: subject_id, session, rate, sorted)');
  t.is(refused("subject_id=1, subject_id=2"), "subject_id is given twice");
  t.is(refused('session="open, rate=1'), 'session="open, rate=1: a quoted value has no closing "');
  t.is(refused('session="a"b'), 'session="a"b: a quoted value is a JSON string, e.g. "a, b"');
  t.is(refused("subject_id=1", true), '"subject_id=1" lacks session, rate, sorted: a key names every attribute (subject_id, session, rate, sorted)');
  t.is(
    t.throws(() => parseKeyLines("subject_id=1, session=a, rate=1, sorted=true\nsubject_id=x", attributes))?.message,
    "line 2: subject_id=x: subject_id is an integer",
  );
  t.is(t.throws(() => parseKeyLines("  \n", attributes))?.message, "give at least one key, one per line");
});
