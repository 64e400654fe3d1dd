/**
 * Responses as the user reads them: every field of the message under its
 * proto name (as grpcurl and the API's docs spell it), enums by their
 * value's name without the enum's prefix ("AVAILABLE", not
 * "VOLUME_STATUS_AVAILABLE"; the unset value as ""), timestamps and
 * durations in their JSON forms. Made from the API's own descriptors
 * (gen/novamesh.binpb), so a field added to the API shows up here as is.
 */
import { readFileSync } from "node:fs";
import { ScalarType, createFileRegistry, fromBinary, toJson, type DescField, type DescMessage, type FileRegistry, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";

let registry: FileRegistry | undefined;
function descriptors(): FileRegistry {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(new URL("../gen/novamesh.binpb", import.meta.url))));
  return registry;
}

/** What a ts-proto grpc-js client knows of a method. */
interface MethodDefinition {
  readonly path: string;
  readonly responseSerialize: (value: unknown) => Buffer;
}

/** The definition of `method` (lowerCamel, as the client names it) of a generated client. */
function methodOf(client: grpc.Client, method: string): MethodDefinition {
  const def = (client.constructor as unknown as { service: Record<string, MethodDefinition> }).service[method];
  if (!def) throw new Error(`no method ${method}`);
  return def;
}

function descOf(client: grpc.Client, method: string) {
  const def = methodOf(client, method);
  const [, service, name] = /^\/([^/]+)\/([^/]+)$/.exec(def.path) ?? [];
  const desc = descriptors().getService(service ?? "")?.methods.find((m) => m.name === name);
  if (!desc) throw new Error(`${def.path} is not in the API's descriptors`);
  return { def, input: desc.input, output: desc.output };
}

/**
 * `request` for `method` as the generated encoder takes it: every field
 * the caller left out, in nested messages too, at its proto default.
 */
export function requestOf(client: grpc.Client, method: string, request: object): object {
  return withDefaults(descOf(client, method).input, request as Record<string, unknown>);
}

function withDefaults(desc: DescMessage, value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...value };
  for (const field of desc.fields) {
    if (field.oneof) continue; // a ts-proto union under the oneof's name: set whole or not at all
    const v = out[field.localName];
    if (v === undefined) out[field.localName] = defaultOf(field);
    else if (field.fieldKind === "message" && !field.message.typeName.startsWith("google.protobuf.") && typeof v === "object" && v !== null) {
      out[field.localName] = withDefaults(field.message, v as Record<string, unknown>);
    } else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(v)) {
      out[field.localName] = v.map((x: unknown) => (typeof x === "object" && x !== null ? withDefaults(field.message, x as Record<string, unknown>) : x));
    }
  }
  return out;
}

function defaultOf(field: DescField): unknown {
  switch (field.fieldKind) {
    case "list":
      return [];
    case "map":
      return {};
    case "message":
      return undefined;
    case "enum":
      return 0;
    case "scalar":
      if (field.proto.proto3Optional) return undefined;
      if (field.scalar === ScalarType.STRING) return "";
      if (field.scalar === ScalarType.BOOL) return false;
      if (field.scalar === ScalarType.BYTES) return Buffer.alloc(0);
      return 0;
  }
}

/** The response of `method` of `client` as a plain object with every field (see the file's comment). */
export function viewOf(client: grpc.Client, method: string, response: unknown): JsonObject {
  const { def, output } = descOf(client, method);
  const message = fromBinary(output, def.responseSerialize(response));
  const json = toJson(output, message, { alwaysEmitImplicit: true, useProtoFieldName: true, registry: descriptors() }) as JsonObject;
  return shortenEnums(output, json);
}

const LONGS = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);

/** `json` of message type `desc` with each enum value's shared prefix taken off and 64-bit integers as numbers. */
function shortenEnums(desc: DescMessage, json: JsonObject): JsonObject {
  for (const field of desc.fields) {
    const value = json[field.name];
    if (value === undefined || value === null) continue;
    json[field.name] = shortenField(field, value);
  }
  return json;
}

function shortenField(field: DescField, value: JsonValue): JsonValue {
  const one = (v: JsonValue): JsonValue => {
    // int64 fields are strings in JSON; as numbers where that loses nothing.
    if (field.scalar !== undefined && LONGS.has(field.scalar) && typeof v === "string" && Number.isSafeInteger(Number(v))) return Number(v);
    if (field.enum && typeof v === "string") {
      const prefix = field.enum.sharedPrefix ?? "";
      const bare = v.toLowerCase().startsWith(prefix) ? v.slice(prefix.length) : v;
      return bare === "UNSPECIFIED" ? "" : bare;
    }
    if (field.message && typeof v === "object" && v !== null && !Array.isArray(v) && !field.message.typeName.startsWith("google.protobuf.")) return shortenEnums(field.message, v);
    return v;
  };
  switch (field.fieldKind) {
    case "list":
      return Array.isArray(value) ? value.map(one) : value;
    case "map":
      if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, v === null ? v : one(v)]));
    default:
      return one(value);
  }
}

/** A field of a view: `path` like "flavor.name"; undefined where the path leads nowhere. */
export function at(view: unknown, path: string): unknown {
  let v = view;
  for (const key of path.split(".")) v = v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>)[key] : undefined;
  return v;
}
