/**
 * A server's ports on its way to a host: the interfaces it asked for at
 * create become ports when it is first placed, and each host it is placed
 * on gets its DHCP port on the server's networks. All or nothing: a
 * savepoint undoes a half-made allocation, so a refused one leaves the
 * transaction (and the server's claim on the host) for the caller to end.
 */
import { status } from "@grpc/grpc-js";
import type { RequestedNetworks } from "../domain/network.js";
import { ApiError } from "../errors.js";
import type { Queryable } from "./db.js";
import { exec, json, releaseSavepoint, rollbackToSavepoint, savepoint, select } from "./db.js";
import { getNetwork } from "./networks.js";
import type { Port } from "../domain/network.js";
import type { Fault } from "../domain/types.js";
import { failedPrecondition, notFound } from "../errors.js";
import { attachPort, createPort, ensureDhcpPort, getPort, nextPosition, setActionPort } from "./ports.js";
import { ensureDefaultGroup } from "./security-groups.js";

/** Why a server's ports could not be made or bound. */
export interface PortFailure {
  /** The server's fault (IP_ADDRESS_EXHAUSTED, …). */
  readonly fault: Fault;
  /** The gRPC status its operation ends with. */
  readonly status: number;
}

/** The networks a server has ports on. */
async function networksOfServer(q: Queryable, serverId: string): Promise<string[]> {
  return (await select<{ network_id: string }>(q, "SELECT DISTINCT network_id FROM ports WHERE device_id = ?", [serverId])).map((r) => r.network_id);
}

/** What binding a server's ports came to: the failure, or whether it has any port (none: nothing to plug on the host). */
export type BoundPorts = { readonly failure: PortFailure } | { readonly failure: null; readonly portless: boolean };

/**
 * Makes the ports `server` asked for (once: the request is cleared after)
 * and the DHCP ports `host` needs on its networks. The failure
 * (IP_ADDRESS_EXHAUSTED, IP_ADDRESS_IN_USE, PORT_IN_USE, NETWORK_NOT_FOUND,
 * …) when not done, with nothing of it left in the transaction.
 */
export async function bindServerPorts(q: Queryable, server: { uuid: string; projectId: string; availabilityZone: string }, host: string): Promise<BoundPorts> {
  const [row] = await select<{ requested_networks: unknown; has_ports: number }>(
    q,
    "SELECT requested_networks, EXISTS (SELECT 1 FROM ports WHERE device_id = ?) AS has_ports FROM instances WHERE uuid = ?",
    [server.uuid, server.uuid],
  );
  const requested = json<RequestedNetworks | null>(row?.requested_networks ?? null, null);
  // A server without interfaces, asked for or made, has nothing to bind.
  if (!requested && !row?.has_ports) return { failure: null, portless: true };
  await savepoint(q, "bind_ports");
  try {
    if (requested) {
      const owner = `compute:${server.availabilityZone || "nova"}`;
      for (const [i, r] of requested.networks.entries()) {
        if (r.portId) {
          if (!(await attachPort(q, r.portId, server.uuid, owner, i))) {
            throw new ApiError(status.FAILED_PRECONDITION, `port ${r.portId} is no longer free`, { reason: "PORT_IN_USE" });
          }
          continue;
        }
        const net = await getNetwork(q, r.networkId!);
        if (!net) throw new ApiError(status.NOT_FOUND, `network ${r.networkId} no longer exists`, { reason: "NETWORK_NOT_FOUND" });
        await createPort(q, {
          networkId: net.id,
          projectId: server.projectId,
          fixedIps: r.fixedIp ? [{ ipAddress: r.fixedIp }] : undefined,
          securityGroupIds: net.portSecurity ? requested.securityGroupIds : [],
          portSecurity: net.portSecurity,
          deviceId: server.uuid,
          deviceOwner: owner,
          autoDelete: true,
          position: i,
          field: `networks[${i}]`,
        });
      }
      await exec(q, "UPDATE instances SET requested_networks = NULL WHERE uuid = ?", [server.uuid]);
    }
    for (const id of await networksOfServer(q, server.uuid)) {
      const net = await getNetwork(q, id);
      if (net) await ensureDhcpPort(q, net, host);
    }
    await releaseSavepoint(q, "bind_ports");
    return { failure: null, portless: false };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    await rollbackToSavepoint(q, "bind_ports");
    return { failure: { fault: { code: err.reason, message: err.message, details: err.metadata, createdAt: new Date().toISOString() }, status: err.code } };
  }
}

/**
 * The port an attach_interface action plugs into `server` on `host`: a new
 * one on `networkId` (any free address, or `fixedIp`; the project's default
 * security group), or the free port `portId`, attached as the server's last
 * interface, with the host's DHCP port on its network. Recorded on the
 * action. Throws the API's errors (exhausted, address taken, port in use);
 * the caller's transaction then changes nothing.
 */
export async function attachNewInterface(
  q: Queryable,
  server: { uuid: string; projectId: string; availabilityZone: string },
  host: string,
  req: { networkId?: string; portId?: string; fixedIp?: string },
  actionId: number,
): Promise<Port> {
  const owner = `compute:${server.availabilityZone || "nova"}`;
  const position = await nextPosition(q, server.uuid);
  let port: Port;
  if (req.portId) {
    if (!(await attachPort(q, req.portId, server.uuid, owner, position))) throw failedPrecondition(`port ${req.portId} is in use`, "PORT_IN_USE", { port: req.portId });
    port = (await getPort(q, req.portId))!;
  } else {
    const net = await getNetwork(q, req.networkId!);
    if (!net) throw notFound("network", req.networkId!);
    port = await createPort(q, {
      networkId: net.id,
      projectId: server.projectId,
      fixedIps: req.fixedIp ? [{ ipAddress: req.fixedIp }] : undefined,
      securityGroupIds: net.portSecurity ? [(await ensureDefaultGroup(q, server.projectId)).id] : [],
      portSecurity: net.portSecurity,
      deviceId: server.uuid,
      deviceOwner: owner,
      autoDelete: true,
      position,
      field: "fixed_ip",
    });
  }
  const net = await getNetwork(q, port.networkId);
  if (net) await ensureDhcpPort(q, net, host);
  await setActionPort(q, actionId, port.id);
  return port;
}
