/**
 * The gRPC health checking protocol (grpc.health.v1.Health: Check, Watch,
 * List) through grpc-health-check's `HealthImplementation`.
 *
 * The service name "" is the server as a whole (what `grpc_health_probe` and
 * load balancers ask by default); other keys are fully-qualified service names
 * such as "novamesh.compute.v1.ServerService". Check answers NOT_FOUND for a
 * name that was never set; Watch streams every change.
 */
import type * as grpc from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus, type ServingStatusMap } from "grpc-health-check";

export type { ServingStatus, ServingStatusMap };

/** Sets the status of `service` ("" = the whole server); watchers are told at once. */
export type HealthSetter = (service: string, status: ServingStatus) => void;

/**
 * Adds grpc.health.v1.Health to `server` with the initial `statusMap`
 * (default: the whole server SERVING) and returns the setter to flip statuses,
 * e.g. `setHealth("", "NOT_SERVING")` while draining on shutdown.
 */
export function addHealth(server: grpc.Server, statusMap: ServingStatusMap = { "": "SERVING" }): HealthSetter {
  const health = new HealthImplementation({ ...statusMap });
  health.addToServer(server);
  return (service, status) => health.setStatus(service, status);
}
