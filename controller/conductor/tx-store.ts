/**
 * The store as a flow sees it: the store functions a flow calls, bound to
 * its transaction's connection. Flows reach MySQL only through this object
 * (`Tx.store`), so their transitions can be checked against a double of it.
 */
import * as actions from "../store/actions.js";
import * as catalog from "../store/catalog.js";
import type { PoolConnection } from "../store/db.js";
import * as instances from "../store/instances.js";
import * as moves from "../store/moves.js";
import * as nodes from "../store/nodes.js";
import * as ops from "../store/ops.js";
import * as groups from "../store/server-groups.js";
import * as ports from "../store/ports.js";
import * as serverPorts from "../store/server-ports.js";
import * as attachments from "../store/volume-attachments.js";
import * as volumes from "../store/volumes.js";
import { dispatchOp } from "./dispatch.js";
import { checkQuota } from "./quota.js";

const STEPS = {
  insertAction: actions.insertAction,
  createAction: actions.createAction,
  findAction: actions.findAction,
  getActionById: actions.getActionById,
  runningAction: actions.runningAction,
  markActionRunning: actions.markActionRunning,
  setActionStep: actions.setActionStep,
  setActionImage: actions.setActionImage,
  finishAction: actions.finishAction,
  instantEvent: actions.instantEvent,
  cancelRequested: actions.cancelRequested,
  getImage: catalog.getImage,
  insertImage: catalog.insertImage,
  activateImage: catalog.activateImage,
  deleteImage: catalog.deleteImage,
  insertInstance: instances.insertInstance,
  getInstance: instances.getInstance,
  updateInstance: instances.updateInstance,
  insertMigration: moves.insertMigration,
  openMigration: moves.openMigration,
  latestMigration: moves.latestMigration,
  updateMigration: moves.updateMigration,
  migrationIdsOf: moves.migrationIdsOf,
  getNodeByHost: nodes.getNodeByHost,
  claim: nodes.claim,
  releaseAllocations: nodes.releaseAllocations,
  moveAllocations: nodes.moveAllocations,
  recordBuildFailure: nodes.recordBuildFailure,
  recordBuildSuccess: nodes.recordBuildSuccess,
  pendingOps: ops.pendingOps,
  finishOp: ops.finishOp,
  getServerGroup: groups.getServerGroup,
  bindServerPorts: serverPorts.bindServerPorts,
  attachNewInterface: serverPorts.attachNewInterface,
  getPort: ports.getPort,
  releaseServerPorts: ports.releaseServerPorts,
  releasePort: ports.releasePort,
  actionPort: ports.actionPort,
  setActionPort: ports.setActionPort,
  getVolume: volumes.getVolume,
  updateVolume: volumes.updateVolume,
  claimPoolBytes: volumes.claimPoolBytes,
  releasePoolBytes: volumes.releasePoolBytes,
  insertAttachment: attachments.insertAttachment,
  getAttachment: attachments.getAttachment,
  attachmentsOf: attachments.attachmentsOf,
  updateAttachment: attachments.updateAttachment,
  deleteAttachment: attachments.deleteAttachment,
  dispatchOp,
  checkQuota,
};

/** A store function without its first parameter (the connection). */
type Bound<F> = F extends (q: never, ...args: infer A) => infer R ? (...args: A) => R : never;

export type TxStore = { readonly [K in keyof typeof STEPS]: Bound<(typeof STEPS)[K]> };

/** The store functions bound to `conn`. */
export function bindStore(conn: PoolConnection): TxStore {
  const bound: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(STEPS)) bound[name] = (...args: unknown[]) => (fn as (...a: unknown[]) => unknown)(conn, ...args);
  return bound as TxStore;
}
