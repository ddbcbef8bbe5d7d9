/**
 * Watch messages as WatchResponses, built and encoded once per message for every watcher of it.
 *
 * The hub hands all the watchers of a table the same WatchMessage object per change
 * (watch-hub.ts), so each form of the response is cached by it: its events decoded into
 * JobEvent messages, or its stored event groups as JobEventGroups (grouped_events), and, for the
 * binary codecs (gRPC, gRPC-Web, Connect with protobuf), the whole response encoded to bytes.
 * Per watcher, connect then encodes a message that holds those bytes as one unknown field:
 * protobuf-es writes unknown fields verbatim (a tag, then the data), so the watcher's stream gets
 * a copy of the bytes, and nothing of the response is serialised again. JSON codecs ignore
 * unknown fields, so JSON clients get the message itself (and a JSON client is rarely a tailer).
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { type JobEventGroupSchema, type WatchResponse, WatchResponseSchema } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { JobStatus } from "@populus/sdk/gen/populus/v1/types_pb.js";
import { decodeKey } from "../key-codec.js";
import type { EventStatus } from "../store/change-log.js";
import type { DeclaredTable } from "../store/store.js";
import { type Codec, keyAttributeMessages, progressMessage, STATUS_TO_PROTO } from "./messages.js";
import type { WatchMessage } from "./watch-hub.js";

/** How the client asked for job events: one JobEvent each, or in groups (WatchRequest.grouped_events). */
export type EventForm = "events" | "groups";

type Cache = WeakMap<WatchMessage, WatchResponse>;
const caches: Record<`${Codec}:${EventForm}`, Cache> = {
  "json:events": new WeakMap(),
  "json:groups": new WeakMap(),
  "binary:events": new WeakMap(),
  "binary:groups": new WeakMap(),
};

/** The response for message `m` in the form and codec a watcher asked for; the same object for every such watcher. */
export function watchResponse(table: DeclaredTable, m: WatchMessage, form: EventForm, codec: Codec): WatchResponse {
  const cache = caches[`${codec}:${form}`];
  let response = cache.get(m);
  if (response === undefined) {
    response =
      codec === "json"
        ? create(WatchResponseSchema, form === "groups" ? groupedResponse(table, m) : eventResponse(table, m))
        : preEncoded(toBinary(WatchResponseSchema, watchResponse(table, m, form, "json")));
    cache.set(m, response);
  }
  return response;
}

function statusToProto(status: EventStatus): JobStatus {
  return status === "deleted" ? JobStatus.UNSPECIFIED : STATUS_TO_PROTO[status];
}

function eventResponse(table: DeclaredTable, m: WatchMessage): MessageInitShape<typeof WatchResponseSchema> {
  return {
    cursor: String(m.cursor),
    progress: m.progress === null ? undefined : progressMessage(table.name, m.progress),
    events: m.events.map((e) => ({
      key: decodeKey(e.keyJson, table.keyAttributes),
      status: statusToProto(e.status),
      time: timestampFromMs(e.time),
      workerId: e.workerId,
      committed: e.committed,
      errorMessage: e.errorMessage,
    })),
  };
}

function groupedResponse(table: DeclaredTable, m: WatchMessage): MessageInitShape<typeof WatchResponseSchema> {
  const groups = m.groups.map(
    (g): MessageInitShape<typeof JobEventGroupSchema> => ({
      keysJson: g.keysJson,
      status: statusToProto(g.status),
      time: timestampFromMs(g.time),
      workerId: g.workerId,
      committed: g.committed,
      errorMessages: [...g.errorMessages],
    }),
  );
  return {
    cursor: String(m.cursor),
    progress: m.progress === null ? undefined : progressMessage(table.name, m.progress),
    eventGroups: groups,
    keyAttributes: groups.length > 0 ? keyAttributeMessages(table.keyAttributes) : [],
  };
}

/**
 * An empty WatchResponse that protobuf-es encodes as exactly `bytes`: their first field's tag
 * becomes the unknown field's tag, and the rest of the bytes its data.
 */
function preEncoded(bytes: Uint8Array): WatchResponse {
  const response = create(WatchResponseSchema);
  if (bytes.length === 0) return response;
  const reader = new BinaryReader(bytes);
  const [no, wireType] = reader.tag();
  response.$unknown = [{ no, wireType, data: bytes.subarray(reader.pos) }];
  return response;
}
