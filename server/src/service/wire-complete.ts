/**
 * Complete's request in columns (lease_tokens and results_json, as the SDK sends it) decoded by
 * hand: the tokens in one short loop and one native decode of the bytes that hold them
 * (@populus/sdk/wire-reader says why). protobuf-es's generic loop ran once per token, a thousand
 * times per call, and a fresh server compiled it with TurboFan during its first drain.
 *
 * Anything else (completions with Structs, a field it does not know, a varint past 32 bits, text
 * that is not UTF-8) answers undefined, and the caller decodes with protobuf-es, which gives the
 * canonical message or error. test/wire-complete.test.ts pins the two equal.
 */
import type { CompleteRequest } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { LEN, stringsAt, tagOf, utf8At, VARINT, WireReader } from "@populus/sdk/wire-reader";

const TABLE = tagOf(1, LEN);
const KEEP_COMPLETED = tagOf(3, VARINT);
const LEASE_TOKEN = tagOf(4, LEN);
const RESULTS_JSON = tagOf(5, LEN);

/** The CompleteRequest in `buf`, or undefined when it is not one this reads (decode it with protobuf-es). */
export function decodeCompleteRequest(buf: Uint8Array): CompleteRequest | undefined {
  const reader = new WireReader(buf, 0, buf.length);
  const tokenSpans: number[] = [];
  let table = "";
  let resultsJson = "";
  let keepCompleted = false;
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    if (tag === KEEP_COMPLETED) {
      const value = reader.varint32();
      if (value < 0) return undefined;
      keepCompleted = value !== 0;
      continue;
    }
    const to = reader.delimited();
    if (to < 0) return undefined;
    if (tag === LEASE_TOKEN) tokenSpans.push(reader.pos, to);
    else if (tag === TABLE || tag === RESULTS_JSON) {
      const text = utf8At(buf, reader.pos, to);
      if (text === undefined) return undefined;
      if (tag === TABLE) table = text;
      else resultsJson = text;
    } else return undefined;
    reader.pos = to;
  }
  const leaseTokens = stringsAt(buf, tokenSpans);
  if (leaseTokens === undefined) return undefined;
  return { $typeName: "populus.v1.CompleteRequest", table, completions: [], keepCompleted, leaseTokens, resultsJson };
}
