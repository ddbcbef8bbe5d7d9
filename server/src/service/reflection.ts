/**
 * gRPC server reflection (doc/server-reflection.md in grpc/grpc), so that
 * `grpcurl -plaintext HOST:PORT list` and `describe populus.v1.JobService`
 * work with no .proto files at hand. connect-node ships none, so this builds
 * it from the descriptors protoc-gen-es embeds in the generated code.
 *
 * grpc.reflection.v1 and v1alpha are wire-identical (only the package name
 * differs), so one ReflectionIndex answers both; reflectionV1 and
 * reflectionV1alpha only adapt the message types. Older grpcurl and grpc-java
 * clients still ask v1alpha first.
 *
 * As grpc-go does, a failed lookup does not end the stream: the answer is an
 * error_response with the gRPC code, and the next request is served.
 * - file_by_filename, file_containing_symbol: NOT_FOUND for a name no served
 *   file declares.
 * - file_containing_extension: NOT_FOUND unless a served file extends that
 *   message with that field number (none does today).
 * - all_extension_numbers_of_type: NOT_FOUND for a name that is not a message
 *   of a served file; a message without extensions answers an empty list.
 * - a request with no message_request set: INVALID_ARGUMENT.
 *
 * File answers carry the file and every file it imports, transitively
 * (google/protobuf well-known types included), the file asked for first.
 * They lack source_code_info (comments): protoc-gen-es strips it when it
 * embeds a descriptor, so `grpcurl describe` shows no comments.
 */
import { createFileRegistry, type DescFile, type DescService, type FileRegistry, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { ServerReflection as ServerReflectionV1 } from "@populus/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import type { ServerReflection as ServerReflectionV1alpha } from "@populus/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";

/** A reflection request of either version (the `message_request` oneof). */
export type ReflectionQuery =
  | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: undefined; value?: undefined };

/** A reflection answer of either version (the `message_response` oneof). */
export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/**
 * Everything reflection can tell about a set of services: their files and the
 * files those import, every symbol those files declare, and their extensions.
 * Built once at startup; every answer is a map lookup.
 */
export class ReflectionIndex {
  /** The services `list_services` names, in registration order. */
  readonly serviceNames: readonly string[];
  private readonly registry: FileRegistry;
  /** Serialized FileDescriptorProto by file name ("populus/v1/types.proto"), computed once. */
  private readonly fileBytes = new Map<string, Uint8Array>();
  /** Fully-qualified symbol → the file declaring it: types, services, methods, fields, oneofs, enum values. */
  private readonly symbols = new Map<string, DescFile>();
  /** Extended message → field number → the file declaring the extension. */
  private readonly extensions = new Map<string, Map<number, DescFile>>();

  /** @param services The served services; duplicates are ignored. */
  constructor(services: Iterable<DescService>) {
    const unique = [...new Map([...services].map((s) => [s.typeName, s])).values()];
    this.serviceNames = unique.map((s) => s.typeName);
    // One registry over each service's file and, transitively, its imports.
    this.registry = createFileRegistry(
      ...unique.map((s) => createFileRegistry(s.file.proto, (name) => s.file.dependencies.find((d) => d.proto.name === name))),
    );
    for (const file of this.registry.files) {
      this.fileBytes.set(file.proto.name, toBinary(FileDescriptorProtoSchema, file.proto));
      for (const desc of nestedTypes(file)) {
        this.symbols.set(desc.typeName, file);
        switch (desc.kind) {
          case "message":
            for (const member of [...desc.fields, ...desc.oneofs]) this.symbols.set(`${desc.typeName}.${member.name}`, file);
            break;
          case "service":
            for (const method of desc.methods) this.symbols.set(`${desc.typeName}.${method.name}`, file);
            break;
          case "enum": {
            // Enum values are scoped as siblings of their enum (C++ scoping rules): pkg.VALUE, pkg.Msg.VALUE.
            const scope = desc.typeName.slice(0, desc.typeName.length - desc.name.length);
            for (const value of desc.values) this.symbols.set(`${scope}${value.name}`, file);
            break;
          }
          case "extension": {
            const byNumber = this.extensions.get(desc.extendee.typeName) ?? new Map<number, DescFile>();
            byNumber.set(desc.number, file);
            this.extensions.set(desc.extendee.typeName, byNumber);
            break;
          }
        }
      }
    }
  }

  /** Answers one request; never throws (failures are error_response answers). */
  answer(query: ReflectionQuery): ReflectionAnswer {
    switch (query.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.serviceNames.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = this.registry.getFile(query.value);
        return file
          ? this.withImports(file)
          : notFound(`file "${query.value}" not found; list_services names the services, file_containing_symbol finds their files`);
      }
      case "fileContainingSymbol": {
        const file = this.symbols.get(query.value.replace(/^\./, ""));
        return file ? this.withImports(file) : notFound(`symbol "${query.value}" not found; use a fully-qualified name such as populus.v1.JobService`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = query.value;
        const file = this.extensions.get(containingType)?.get(extensionNumber);
        return file ? this.withImports(file) : notFound(`no extension of "${containingType}" with field number ${extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        if (this.registry.getMessage(query.value) === undefined) return notFound(`message type "${query.value}" not found`);
        const numbers = [...(this.extensions.get(query.value)?.keys() ?? [])].sort((a, b) => a - b);
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: query.value, extensionNumber: numbers } };
      }
      case undefined:
        return {
          case: "errorResponse",
          value: {
            errorCode: Code.InvalidArgument,
            errorMessage:
              "empty request: set one of file_by_filename, file_containing_symbol, file_containing_extension, all_extension_numbers_of_type, list_services",
          },
        };
    }
  }

  /** The file, then each file it imports (depth first, each once). */
  private withImports(file: DescFile): ReflectionAnswer {
    const order: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      order.push(this.fileBytes.get(f.proto.name) ?? toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: order } };
  }
}

function notFound(message: string): ReflectionAnswer {
  // Code.NotFound is 5, the gRPC status code number the protocol carries in error_code.
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}

/**
 * The requests of one call, until the client half-closes or ctx.signal aborts
 * (client cancel, deadline, server shutdown): an idle reflection stream must
 * not hold up the drain.
 */
async function* untilAborted<T>(requests: AsyncIterable<T>, ctx: HandlerContext): AsyncGenerator<T> {
  const it = requests[Symbol.asyncIterator]();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    if (ctx.signal.aborted) resolve(undefined);
    else ctx.signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    for (;;) {
      const next = await Promise.race([it.next(), aborted]);
      if (next === undefined || next.done === true) return;
      yield next.value;
    }
  } finally {
    if (onAbort) ctx.signal.removeEventListener("abort", onAbort);
  }
}

/** grpc.reflection.v1.ServerReflection over an index. */
export function reflectionV1(index: ReflectionIndex): ServiceImpl<typeof ServerReflectionV1> {
  return {
    async *serverReflectionInfo(requests, ctx) {
      for await (const req of untilAborted(requests, ctx)) {
        yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req.messageRequest) };
      }
    },
  };
}

/** grpc.reflection.v1alpha.ServerReflection over an index (same fields, older package). */
export function reflectionV1alpha(index: ReflectionIndex): ServiceImpl<typeof ServerReflectionV1alpha> {
  return {
    async *serverReflectionInfo(requests, ctx) {
      for await (const req of untilAborted(requests, ctx)) {
        yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req.messageRequest) };
      }
    },
  };
}
