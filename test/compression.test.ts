/**
 * Compression: the server answers uncompressed whatever the client accepts
 * (gzip of large answers cost the server's CPU, which every worker shares),
 * and still takes compressed requests. Over the Connect protocol (curl's
 * Accept-Encoding and content-encoding) and over gRPC (grpc-encoding).
 */
import test from "ava";
import { createClient } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport } from "@connectrpc/connect-node";
import { JobService, ReserveRequestSchema, ReserveResponseSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { connect } from "node:http2";
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { keys } from "./helpers/jobs-client.js";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";

const server = sqliteServerPerFile(test);

const WORKER = { workerId: "w", host: "h", pid: 1, user: "u", codeVersion: "" };

test("Connect: a client that accepts gzip gets an uncompressed answer; a gzipped request is taken", async (t) => {
  const refresh = JSON.stringify({ table: "Gzipped", keys: Array.from({ length: 100 }, (_, i) => ({ attributes: { id: { intValue: String(i) } } })) });
  const sent = await fetch(`${server().url}/populus.v1.JobService/Refresh`, {
    method: "POST",
    headers: { "content-type": "application/json", "content-encoding": "gzip", "accept-encoding": "gzip" },
    body: gzipSync(refresh),
  });
  t.is(sent.status, 200, await sent.clone().text());
  t.like(await sent.json(), { added: "100" });

  const reserved = await fetch(`${server().url}/populus.v1.JobService/Reserve`, {
    method: "POST",
    headers: { "content-type": "application/json", "accept-encoding": "gzip, br" },
    body: JSON.stringify({ table: "Gzipped", maxJobs: 50, worker: WORKER }),
  });
  const body = Buffer.from(await reserved.arrayBuffer());
  t.true(body.length > 1024, "an answer connect-node would otherwise gzip (over 1 KiB)");
  t.is(reserved.headers.get("content-encoding"), null);
  t.is((JSON.parse(body.toString("utf8")) as { leases: unknown[] }).leases.length, 50);
});

test("gRPC: gzipped requests are taken, and each answer's message comes with its compressed flag off to a client that accepts gzip", async (t) => {
  const rpc = createClient(
    JobService,
    createGrpcTransport({ baseUrl: server().url, sendCompression: compressionGzip, acceptCompression: [compressionGzip], compressMinBytes: 1 }),
  );
  t.like(await rpc.refresh({ table: "GrpcGzipped", keys: keys(0, 100) }), { added: 100n });

  // The envelope's first byte is the compressed flag: read it off the wire.
  const session = connect(server().url);
  try {
    const request = toBinary(ReserveRequestSchema, create(ReserveRequestSchema, { table: "GrpcGzipped", maxJobs: 50, worker: WORKER }));
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), Buffer.from(request)]);
    envelope.writeUInt32BE(request.length, 1);
    const stream = session.request({
      ":method": "POST",
      ":path": "/populus.v1.JobService/Reserve",
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-accept-encoding": "gzip",
    });
    stream.end(envelope);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    t.true(body.length > 1024, "an answer connect-node would otherwise gzip (over 1 KiB)");
    t.is(body[0], 0, "the message is not compressed");
    t.is(fromBinary(ReserveResponseSchema, body.subarray(5, 5 + body.readUInt32BE(1))).leases.length, 50);
  } finally {
    session.close();
  }
});
