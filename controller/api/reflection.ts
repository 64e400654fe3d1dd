/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) served from the
 * FileDescriptorSet that `buf build` writes (gen/novamesh.binpb).
 *
 * Why not `@grpc/reflection`: 1.0.4 serves a file with an empty `dependency`
 * list and cannot serve imported files, so grpcurl and other clients fail on
 * any message using google.protobuf.Timestamp & co (DESIGN.md §3). Here every
 * file answer carries the requested file first and then its transitive imports,
 * as grpc-go does: imports already sent on the same stream are skipped (the
 * requested file never is), imports missing from the set are skipped, and
 * clients dedupe by file name anyway. Symbols may carry a leading dot.
 *
 * The descriptors of the health and reflection protocols themselves are not in
 * the buf set, so they are built below as FileDescriptorProtos (the v1 one also
 * serves as the schema that encodes and decodes the reflection messages; v1alpha
 * has the same wire format).
 */
import * as grpc from "@grpc/grpc-js";
import { create, createFileRegistry, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProtoSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";

/** The full names of the two reflection services this module adds. */
export const REFLECTION_SERVICES = [
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
] as const;

export interface ReflectionOptions {
  /** Names answered to list_services. Default: every service in the set, plus health and reflection. */
  services?: string[];
}

// ---------------------------------------------------------------------------
// Hand-built descriptors of grpc.reflection.{v1,v1alpha} and grpc.health.v1.

type MessageInit = MessageInitShape<typeof DescriptorProtoSchema>;
type FieldSpec = [name: string, number: number, type: string, extra?: { repeated?: boolean; oneof?: number }];
const SCALARS: Record<string, Type> = { string: Type.STRING, int32: Type.INT32, bytes: Type.BYTES };

/** A message; a field's type is a scalar, a message, or `enum:<name>`, names relative to `pkg`. */
function message(pkg: string, name: string, fields: FieldSpec[], more: MessageInit = {}): MessageInit {
  const field = fields.map(([fname, number, type, extra = {}]) => {
    const scalar = SCALARS[type];
    const isEnum = type.startsWith("enum:");
    return {
      name: fname,
      number,
      jsonName: fname.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
      label: extra.repeated ? Label.REPEATED : Label.OPTIONAL,
      type: scalar ?? (isEnum ? Type.ENUM : Type.MESSAGE),
      typeName: scalar === undefined ? `.${pkg}.${isEnum ? type.slice(5) : type}` : undefined,
      oneofIndex: extra.oneof,
    };
  });
  return { name, field, ...more };
}

/** A method of `pkg`; `stream` marks a server-streaming ("server") or bidi ("bidi") call. */
function method(pkg: string, name: string, input: string, output: string, stream?: "server" | "bidi") {
  return {
    name,
    inputType: `.${pkg}.${input}`,
    outputType: `.${pkg}.${output}`,
    clientStreaming: stream === "bidi" || undefined, // unset rather than false, as protoc writes it
    serverStreaming: stream !== undefined || undefined,
  };
}

/** grpc/reflection/<version>/reflection.proto (v1 and v1alpha differ only in the package). */
function reflectionFile(version: "v1" | "v1alpha"): FileDescriptorProto {
  const pkg = `grpc.reflection.${version}`;
  const m = (name: string, fields: FieldSpec[], more?: MessageInit) => message(pkg, name, fields, more);
  return create(FileDescriptorProtoSchema, {
    name: `grpc/reflection/${version}/reflection.proto`,
    package: pkg,
    syntax: "proto3",
    messageType: [
      m("ServerReflectionRequest", [
        ["host", 1, "string"],
        ["file_by_filename", 3, "string", { oneof: 0 }],
        ["file_containing_symbol", 4, "string", { oneof: 0 }],
        ["file_containing_extension", 5, "ExtensionRequest", { oneof: 0 }],
        ["all_extension_numbers_of_type", 6, "string", { oneof: 0 }],
        ["list_services", 7, "string", { oneof: 0 }],
      ], { oneofDecl: [{ name: "message_request" }] }),
      m("ExtensionRequest", [["containing_type", 1, "string"], ["extension_number", 2, "int32"]]),
      m("ServerReflectionResponse", [
        ["valid_host", 1, "string"],
        ["original_request", 2, "ServerReflectionRequest"],
        ["file_descriptor_response", 4, "FileDescriptorResponse", { oneof: 0 }],
        ["all_extension_numbers_response", 5, "ExtensionNumberResponse", { oneof: 0 }],
        ["list_services_response", 6, "ListServiceResponse", { oneof: 0 }],
        ["error_response", 7, "ErrorResponse", { oneof: 0 }],
      ], { oneofDecl: [{ name: "message_response" }] }),
      m("FileDescriptorResponse", [["file_descriptor_proto", 1, "bytes", { repeated: true }]]),
      m("ExtensionNumberResponse", [["base_type_name", 1, "string"], ["extension_number", 2, "int32", { repeated: true }]]),
      m("ListServiceResponse", [["service", 1, "ServiceResponse", { repeated: true }]]),
      m("ServiceResponse", [["name", 1, "string"]]),
      m("ErrorResponse", [["error_code", 1, "int32"], ["error_message", 2, "string"]]),
    ],
    service: [{
      name: "ServerReflection",
      method: [method(pkg, "ServerReflectionInfo", "ServerReflectionRequest", "ServerReflectionResponse", "bidi")],
    }],
  });
}

/** grpc/health/v1/health.proto, as implemented by grpc-health-check 2.x (Check, Watch, List). */
function healthFile(): FileDescriptorProto {
  const pkg = "grpc.health.v1";
  const m = (name: string, fields: FieldSpec[], more?: MessageInit) => message(pkg, name, fields, more);
  const statuses = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"].map((name, number) => ({ name, number }));
  return create(FileDescriptorProtoSchema, {
    name: "grpc/health/v1/health.proto",
    package: pkg,
    syntax: "proto3",
    messageType: [
      m("HealthListRequest", []),
      m("HealthListResponse", [["statuses", 1, "HealthListResponse.StatusesEntry", { repeated: true }]], {
        nestedType: [
          m("StatusesEntry", [["key", 1, "string"], ["value", 2, "HealthCheckResponse"]], { options: { mapEntry: true } }),
        ],
      }),
      m("HealthCheckRequest", [["service", 1, "string"]]),
      m("HealthCheckResponse", [["status", 1, "enum:HealthCheckResponse.ServingStatus"]], {
        enumType: [{ name: "ServingStatus", value: statuses }],
      }),
    ],
    service: [{
      name: "Health",
      method: [
        method(pkg, "Check", "HealthCheckRequest", "HealthCheckResponse"),
        method(pkg, "Watch", "HealthCheckRequest", "HealthCheckResponse", "server"),
        method(pkg, "List", "HealthListRequest", "HealthListResponse"),
      ],
    }],
  });
}

// ---------------------------------------------------------------------------
// Index of files, symbols and extensions.

class DescriptorIndex {
  /** File name → its descriptor and its serialized bytes. */
  readonly files = new Map<string, { proto: FileDescriptorProto; bytes: Uint8Array }>();
  /** Fully-qualified symbol (no leading dot) → name of the file declaring it. */
  readonly symbols = new Map<string, string>();
  /** Fully-qualified message names. */
  readonly messages = new Set<string>();
  /** Extended message → extension number → file. */
  readonly extensions = new Map<string, Map<number, string>>();
  /** Fully-qualified service names, in file order. */
  readonly services: string[] = [];

  add(proto: FileDescriptorProto): void {
    if (this.files.has(proto.name)) return;
    this.files.set(proto.name, { proto, bytes: toBinary(FileDescriptorProtoSchema, proto) });
    const prefix = proto.package ? `${proto.package}.` : "";
    for (const msg of proto.messageType) this.addMessage(prefix, msg, proto.name);
    for (const en of proto.enumType) this.addEnum(prefix, en, proto.name);
    for (const ext of proto.extension) this.addExtension(prefix, ext, proto.name);
    for (const svc of proto.service) {
      const full = prefix + svc.name;
      this.services.push(full);
      this.symbol(full, proto.name);
      for (const m of svc.method) this.symbol(`${full}.${m.name}`, proto.name);
    }
  }

  private symbol(name: string, file: string): void {
    if (!this.symbols.has(name)) this.symbols.set(name, file);
  }

  private addMessage(prefix: string, msg: DescriptorProto, file: string): void {
    const full = prefix + msg.name;
    this.symbol(full, file);
    this.messages.add(full);
    for (const f of msg.field) this.symbol(`${full}.${f.name}`, file);
    for (const o of msg.oneofDecl) this.symbol(`${full}.${o.name}`, file);
    for (const nested of msg.nestedType) this.addMessage(`${full}.`, nested, file);
    for (const en of msg.enumType) this.addEnum(`${full}.`, en, file);
    for (const ext of msg.extension) this.addExtension(`${full}.`, ext, file);
  }

  /** Enum values are scoped beside their enum (C++ rules); the enum-qualified name is accepted too. */
  private addEnum(prefix: string, en: EnumDescriptorProto, file: string): void {
    const full = prefix + en.name;
    this.symbol(full, file);
    for (const v of en.value) {
      this.symbol(prefix + v.name, file);
      this.symbol(`${full}.${v.name}`, file);
    }
  }

  private addExtension(prefix: string, ext: FieldDescriptorProto, file: string): void {
    this.symbol(prefix + ext.name, file);
    const extendee = ext.extendee.replace(/^\./, "");
    const numbers = this.extensions.get(extendee) ?? new Map<number, string>();
    if (!numbers.has(ext.number)) numbers.set(ext.number, file);
    this.extensions.set(extendee, numbers);
  }

  /** The file first, then its transitive imports not yet in `sent` (grpc-go's order and dedupe). */
  closure(name: string, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const visit = (file: string, requested: boolean): void => {
      const entry = this.files.get(file);
      if (!entry || (!requested && sent.has(file))) return;
      sent.add(file);
      out.push(entry.bytes);
      for (const dep of entry.proto.dependency) visit(dep, false);
    };
    visit(name, true);
    return out;
  }
}

// ---------------------------------------------------------------------------
// The protocol.

/** ServerReflectionRequest as decoded by @bufbuild/protobuf from the schema above. */
interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: undefined; value?: undefined };
}

/** A message given as a plain object, turned into a message by `create`. */
type Init = Record<string, unknown>;
const NOT_FOUND = grpc.status.NOT_FOUND;
const registry = createFileRegistry(reflectionFile("v1"), () => undefined);
const requestSchema = registry.getMessage("grpc.reflection.v1.ServerReflectionRequest") as DescMessage;
const responseSchema = registry.getMessage("grpc.reflection.v1.ServerReflectionResponse") as DescMessage;

/** The `message_response` of one request; `sent` holds the files already sent on this stream. */
function answer(index: DescriptorIndex, services: string[], req: ReflectionRequest, sent: Set<string>) {
  const error = (code: grpc.status, errorMessage: string) =>
    ({ case: "errorResponse", value: { errorCode: code, errorMessage } }) as const;
  const files = (file: string | undefined, what: string) =>
    file === undefined
      ? error(NOT_FOUND, `${what} not found`)
      : ({ case: "fileDescriptorResponse", value: { fileDescriptorProto: index.closure(file, sent) } } as const);
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } } as const;
    case "fileByFilename":
      return files(index.files.has(r.value) ? r.value : undefined, `file ${r.value}`);
    case "fileContainingSymbol":
      return files(index.symbols.get(r.value.replace(/^\./, "")), `symbol ${r.value}`);
    case "fileContainingExtension": {
      const type = r.value.containingType.replace(/^\./, "");
      const file = index.extensions.get(type)?.get(r.value.extensionNumber);
      return files(file, `extension ${r.value.extensionNumber} of ${type}`);
    }
    case "allExtensionNumbersOfType": {
      const type = r.value.replace(/^\./, "");
      if (!index.messages.has(type)) return error(NOT_FOUND, `type ${type} not found`);
      const numbers = [...(index.extensions.get(type)?.keys() ?? [])].sort((a, b) => a - b);
      return { case: "allExtensionNumbersResponse", value: { baseTypeName: type, extensionNumber: numbers } } as const;
    }
    default:
      return error(grpc.status.INVALID_ARGUMENT, "empty or unknown message_request");
  }
}

/**
 * Adds grpc.reflection.v1 and grpc.reflection.v1alpha `ServerReflection` to
 * `server`, answering from `descriptorSet` (a serialized FileDescriptorSet with
 * every import included, as `buf build -o x.binpb` writes) plus the health and
 * reflection protocols' own descriptors. `opts.services` sets what list_services
 * answers; all files of the set stay resolvable by name and symbol either way.
 */
export function addReflection(server: grpc.Server, descriptorSet: Uint8Array, opts: ReflectionOptions = {}): void {
  const index = new DescriptorIndex();
  for (const file of fromBinary(FileDescriptorSetSchema, descriptorSet).file) index.add(file);
  for (const file of [healthFile(), reflectionFile("v1"), reflectionFile("v1alpha")]) index.add(file);
  const services = [...new Set(opts.services ?? index.services)].sort();

  const handler: grpc.handleBidiStreamingCall<ReflectionRequest, Init> = (call) => {
    const sent = new Set<string>();
    call.on("data", (req: ReflectionRequest) => {
      call.write({ validHost: req.host, originalRequest: req, messageResponse: answer(index, services, req, sent) });
    });
    call.on("end", () => call.end());
    call.on("error", () => undefined); // the client went away; nothing to clean up
  };
  for (const service of REFLECTION_SERVICES) {
    const definition: grpc.ServiceDefinition = {
      ServerReflectionInfo: {
        path: `/${service}/ServerReflectionInfo`,
        requestStream: true,
        responseStream: true,
        requestSerialize: (m: Init) => Buffer.from(toBinary(requestSchema, create(requestSchema, m))),
        requestDeserialize: (b: Buffer) => fromBinary(requestSchema, b) as unknown as ReflectionRequest,
        responseSerialize: (m: Init) => Buffer.from(toBinary(responseSchema, create(responseSchema, m))),
        responseDeserialize: (b: Buffer) => fromBinary(responseSchema, b),
      },
    };
    server.addService(definition, { ServerReflectionInfo: handler });
  }
}
