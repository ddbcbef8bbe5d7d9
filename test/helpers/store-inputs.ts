/**
 * Inputs of the store's own API (server/src/store/store.ts) for tests that call a store directly,
 * without a server in front.
 */
import { create } from "@bufbuild/protobuf";
import { KeySchema } from "../../client-sdk/dist/gen/populus/v1/types_pb.js";
import type { EncodedKeyList, KeyAttributes, KeyHashScheme } from "../../server/dist/key-codec.js";
import type { RefreshInput } from "../../server/dist/store/store.js";

/** The key `{ id }`, as a client sends it. */
export const idKey = (id: number) => create(KeySchema, { attributes: { id: { kind: { case: "intValue", value: BigInt(id) } } } });

/** A single-call refresh of `keys` into `table` (not final: no stale removal), priority 5, no delay. */
export function refreshInput(table: string, keyAttributes: KeyAttributes, keys: EncodedKeyList, keyHash: KeyHashScheme, now: number): RefreshInput {
  return {
    table,
    displayName: table,
    keyAttributes,
    keyHash,
    keys,
    refreshId: null,
    final: false,
    priority: 5,
    delayMs: 0,
    staleTimeoutMs: 3_600_000,
    orphanTimeoutMs: null,
    now,
  };
}
