/**
 * Promise-returning clients of every public service, as the tests use them
 * (re-exported by harness.ts).
 */
import * as grpc from "@grpc/grpc-js";
import { AggregateServiceClient } from "../gen/novamesh/compute/v1/aggregate.js";
import { AuditServiceClient } from "../gen/novamesh/compute/v1/audit.js";
import { FlavorServiceClient } from "../gen/novamesh/compute/v1/flavor.js";
import { HostServiceClient, type Hypervisor } from "../gen/novamesh/compute/v1/host.js";
import { IdentityServiceClient } from "../gen/novamesh/compute/v1/identity.js";
import { ImageServiceClient } from "../gen/novamesh/compute/v1/image.js";
import { KeypairServiceClient } from "../gen/novamesh/compute/v1/keypair.js";
import { OperationServiceClient } from "../gen/novamesh/compute/v1/operation.js";
import { QuotaServiceClient } from "../gen/novamesh/compute/v1/quota.js";
import { SchedulerServiceClient } from "../gen/novamesh/compute/v1/scheduler.js";
import { ServerServiceClient } from "../gen/novamesh/compute/v1/server.js";
import { ServerGroupServiceClient } from "../gen/novamesh/compute/v1/server_group.js";
import { NetworkServiceClient } from "../gen/novamesh/network/v1/network.js";
import { SecurityGroupServiceClient } from "../gen/novamesh/network/v1/security_group.js";
import { VolumeServiceClient } from "../gen/novamesh/volume/v1/volume.js";

type Callback<Res> = (err: grpc.ServiceError | null, res: Res) => void;
type UnaryMethod<Req, Res> = (req: Req, md: grpc.Metadata, cb: Callback<Res>) => unknown;

/** Turns a generated grpc-js client into one whose unary methods return promises. */
export type Promised<C> = {
  [K in keyof C]: C[K] extends {
    (req: infer Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: infer Res) => void): grpc.ClientUnaryCall;
  }
    ? (req: Partial<Req>) => Promise<Res>
    : C[K];
};

export function promised<C extends grpc.Client>(client: C, token: string | null): Promised<C> & { raw: C; metadata: () => grpc.Metadata } {
  const metadata = () => {
    const md = new grpc.Metadata();
    if (token !== null) md.set("authorization", `Bearer ${token}`);
    return md;
  };
  return new Proxy(client as object, {
    get(target, prop) {
      if (prop === "raw") return client;
      if (prop === "metadata") return metadata;
      const v = (target as Record<string | symbol, unknown>)[prop];
      if (typeof v !== "function") return v;
      // Fill the fields a test leaves out with proto defaults (decoding an
      // empty message yields them), as generated encoders need every field.
      const def = (client.constructor as unknown as { service: Record<string, { requestDeserialize: (b: Buffer) => object }> }).service[prop as string];
      return (req: object) =>
        new Promise((resolve, reject) => {
          const full = def ? { ...def.requestDeserialize(Buffer.alloc(0)), ...req } : req;
          (v as UnaryMethod<unknown, unknown>).call(target, full, metadata(), (err, res) => (err ? reject(err) : resolve(res)));
        });
    },
  }) as Promised<C> & { raw: C; metadata: () => grpc.Metadata };
}

export interface Clients {
  /** All hypervisors (admin). */
  hypervisors: () => Promise<Hypervisor[]>;
  servers: ReturnType<typeof promised<ServerServiceClient>>;
  flavors: ReturnType<typeof promised<FlavorServiceClient>>;
  images: ReturnType<typeof promised<ImageServiceClient>>;
  hosts: ReturnType<typeof promised<HostServiceClient>>;
  identity: ReturnType<typeof promised<IdentityServiceClient>>;
  operations: ReturnType<typeof promised<OperationServiceClient>>;
  groups: ReturnType<typeof promised<ServerGroupServiceClient>>;
  aggregates: ReturnType<typeof promised<AggregateServiceClient>>;
  scheduler: ReturnType<typeof promised<SchedulerServiceClient>>;
  audit: ReturnType<typeof promised<AuditServiceClient>>;
  networks: ReturnType<typeof promised<NetworkServiceClient>>;
  securityGroups: ReturnType<typeof promised<SecurityGroupServiceClient>>;
  volumes: ReturnType<typeof promised<VolumeServiceClient>>;
  quotas: ReturnType<typeof promised<QuotaServiceClient>>;
  keypairs: ReturnType<typeof promised<KeypairServiceClient>>;
}

export function clients(address: string, token: string | null, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure()): Clients {
  const hosts = promised(new HostServiceClient(address, creds), token);
  return {
    hypervisors: async () => (await hosts.listHypervisors({})).hypervisors,
    servers: promised(new ServerServiceClient(address, creds), token),
    flavors: promised(new FlavorServiceClient(address, creds), token),
    images: promised(new ImageServiceClient(address, creds), token),
    hosts,
    identity: promised(new IdentityServiceClient(address, creds), token),
    operations: promised(new OperationServiceClient(address, creds), token),
    groups: promised(new ServerGroupServiceClient(address, creds), token),
    aggregates: promised(new AggregateServiceClient(address, creds), token),
    scheduler: promised(new SchedulerServiceClient(address, creds), token),
    audit: promised(new AuditServiceClient(address, creds), token),
    networks: promised(new NetworkServiceClient(address, creds), token),
    securityGroups: promised(new SecurityGroupServiceClient(address, creds), token),
    volumes: promised(new VolumeServiceClient(address, creds), token),
    quotas: promised(new QuotaServiceClient(address, creds), token),
    keypairs: promised(new KeypairServiceClient(address, creds), token),
  };
}
