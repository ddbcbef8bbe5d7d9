/**
 * Store values as the protobuf messages JobService answers with, shared by the
 * handlers (job-service.ts) and the Watch responses (watch-responses.ts).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { JobStatus, type KeyAttribute, type ProgressSchema } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { attributeTypeToProto, type KeyAttributes } from "../key-codec.js";
import type { JobStatusName, ProgressCounts } from "../store/store.js";

export const STATUS_TO_PROTO: Readonly<Record<JobStatusName, JobStatus>> = {
  pending: JobStatus.PENDING,
  reserved: JobStatus.RESERVED,
  success: JobStatus.SUCCESS,
  error: JobStatus.ERROR,
  ignore: JobStatus.IGNORE,
};

/** Maps store counts to the Progress message. */
export function progressMessage(table: string, c: ProgressCounts): MessageInitShape<typeof ProgressSchema> {
  return {
    table,
    pending: BigInt(c.pending),
    reserved: BigInt(c.reserved),
    success: BigInt(c.success),
    error: BigInt(c.error),
    ignore: BigInt(c.ignore),
    target: BigInt(c.target),
    remaining: BigInt(c.pending + c.reserved),
  };
}

const keyAttributeCache = new WeakMap<KeyAttributes, KeyAttribute[]>();

/** A table's key attributes as KeyAttribute messages, made once per table definition (ListTables, Reserve's columns, Watch's groups). */
export function keyAttributeMessages(attributes: KeyAttributes): KeyAttribute[] {
  let messages = keyAttributeCache.get(attributes);
  if (messages === undefined) {
    messages = attributes.map((a): KeyAttribute => ({ $typeName: "populus.v1.KeyAttribute", name: a.name, type: attributeTypeToProto(a.type) }));
    keyAttributeCache.set(attributes, messages);
  }
  return messages;
}

/** How the response goes on the wire: binary codecs can take pre-encoded bytes (watch-responses.ts, wire-ascii.ts). */
export type Codec = "binary" | "json";

/** The codec of a call, from its request's content type (application/json, application/grpc+json, ... are JSON). */
export function codecOf(requestHeader: Headers): Codec {
  return /\+json\b|\/json\b/i.test(requestHeader.get("content-type") ?? "") ? "json" : "binary";
}
