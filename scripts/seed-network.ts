/**
 * Makes sure the all-in-one's network is registered: `public`, a shared flat
 * network on the operator's bridge `novamesh0` (which scripts/allinone.sh
 * makes on the host, with 10.42.0.1/24), with the subnet 10.42.0.0/24,
 * gateway 10.42.0.1, addresses 10.42.0.10–10.42.0.250 for servers and the
 * hosts' DHCP servers. Every project that has no network of its own gets it
 * as its default network.
 *
 *   tsx scripts/seed-network.ts [ADDRESS] [--tls-ca FILE | --plaintext]
 *
 * ADDRESS is the controller's gRPC address (default: NOVAMESH_CONTROLLER,
 * else 127.0.0.1:8774); the token comes from NOVAMESH_ADMIN_TOKEN (an admin:
 * flat and shared networks are admin-only). Safe to run any number of times:
 * what is there is kept; a `public` network or subnet that differs from the
 * above is reported and left alone (the script fails).
 */
import * as grpc from "@grpc/grpc-js";
import {
  CreateNetworkRequest,
  NetworkServiceClient,
  Segmentation,
  Subnet,
  type CreateNetworkResponse,
  type CreateSubnetResponse,
  type ListNetworksResponse,
  type ListSubnetsResponse,
  type Network,
} from "../gen/novamesh/network/v1/network.js";
import { adminConnection, runScript } from "./admin-cli.js";

export const PUBLIC_NETWORK = {
  name: "public",
  bridge: "novamesh0",
  cidr: "10.42.0.0/24",
  gateway: "10.42.0.1",
  pool: { start: "10.42.0.10", end: "10.42.0.250" },
} as const;

export interface NetworkSeedResult {
  readonly networkId: string;
  readonly subnetId: string;
  /** "kept network …", "created network …", "created subnet …", "kept subnet …". */
  readonly actions: readonly string[];
}

/** Registers PUBLIC_NETWORK unless it is there; throws when a `public` network or subnet differs from it. */
export async function seedPublicNetwork(client: NetworkServiceClient, md: grpc.Metadata): Promise<NetworkSeedResult> {
  const done = <Res>(ok: (r: Res) => void, fail: (e: unknown) => void) => (err: grpc.ServiceError | null, res?: Res) => (err ? fail(err) : ok(res!));
  const listNetworks = () => new Promise<ListNetworksResponse>((ok, fail) => client.listNetworks({ allProjects: true }, md, done(ok, fail)));
  const listSubnets = (networkId: string) => new Promise<ListSubnetsResponse>((ok, fail) => client.listSubnets({ networkId }, md, done(ok, fail)));
  const createNetwork = (req: CreateNetworkRequest) => new Promise<CreateNetworkResponse>((ok, fail) => client.createNetwork(req, md, done(ok, fail)));
  const createSubnet = (subnet: Subnet) => new Promise<CreateSubnetResponse>((ok, fail) => client.createSubnet({ subnet }, md, done(ok, fail)));
  const actions: string[] = [];
  const p = PUBLIC_NETWORK;

  const { networks } = await listNetworks();
  const named = networks.filter((n: Network) => n.name === p.name && n.shared);
  if (named.length > 1) throw new Error(`${named.length} shared networks are named "${p.name}" (${named.map((n) => n.id).join(", ")}); keep one`);
  let network = named[0];
  if (network) {
    if (network.segmentation !== Segmentation.SEGMENTATION_FLAT || network.physicalNetwork !== p.bridge) {
      throw new Error(`the shared network "${p.name}" (${network.id}) is not flat on bridge ${p.bridge} (it is ${Segmentation[network.segmentation]} ${network.physicalNetwork}); delete it or rename it`);
    }
    actions.push(`kept network ${network.id}`);
  } else {
    network = (await createNetwork(CreateNetworkRequest.fromPartial({ name: p.name, shared: true, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: p.bridge }))).network!;
    actions.push(`created network ${network.id}`);
  }

  const { subnets } = await listSubnets(network.id);
  let subnet = subnets.find((s) => s.cidr === p.cidr);
  if (subnet) {
    const pool = subnet.allocationPools.map((a) => `${a.start}-${a.end}`).join(",");
    if (subnet.gatewayIp !== p.gateway || pool !== `${p.pool.start}-${p.pool.end}` || !subnet.enableDhcp) {
      throw new Error(`subnet ${subnet.id} of "${p.name}" has gateway ${subnet.gatewayIp || "none"}, pools ${pool || "none"}, DHCP ${subnet.enableDhcp ? "on" : "off"}; expected gateway ${p.gateway}, pool ${p.pool.start}-${p.pool.end}, DHCP on`);
    }
    actions.push(`kept subnet ${subnet.id}`);
  } else {
    subnet = (await createSubnet(Subnet.fromPartial({ networkId: network.id, name: `${p.name}-v4`, cidr: p.cidr, gatewayIp: p.gateway, allocationPools: [p.pool] }))).subnet!;
    actions.push(`created subnet ${subnet.id}`);
  }
  return { networkId: network.id, subnetId: subnet.id, actions };
}

const USAGE = "tsx scripts/seed-network.ts [ADDRESS] [--tls-ca FILE | --plaintext]";

async function main(): Promise<void> {
  const c = adminConnection(process.argv.slice(2));
  const client = new NetworkServiceClient(c.address, c.credentials, c.channelOptions);
  try {
    const r = await seedPublicNetwork(client, c.metadata);
    const p = PUBLIC_NETWORK;
    const fresh = r.actions.some((a) => a.startsWith("created"));
    console.log(`seed-network: network "${p.name}" ${fresh ? "registered" : "present"} (${r.networkId}): shared, flat on bridge ${p.bridge}, subnet ${p.cidr}, gateway ${p.gateway}, pool ${p.pool.start}-${p.pool.end}`);
  } finally {
    client.close();
  }
}

runScript(import.meta.url, "seed-network", USAGE, main);
