/**
 * A hand-driven agent stream for integration tests: what a process holding
 * a token can say on AgentService/Connect, one message at a time.
 */
import { Metadata, credentials, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { AgentServiceClient, type ConnectRequest, type ConnectResponse, type SnapshotInfo, type VolumePool } from "../gen/novamesh/agent/v1/agent.js";
import { PowerState } from "../gen/novamesh/compute/v1/server.js";

type Stream = ClientDuplexStream<ConnectRequest, ConnectResponse>;

/** A hand-driven agent stream: what a process holding `token` can say. */
export class RawAgent {
  readonly call: Stream;
  readonly acks: string[] = [];
  readonly ended: Promise<ServiceError | "ended">;
  /** Its AgentService client (the channel its other calls share). */
  readonly client: AgentServiceClient;
  private helloAck: Promise<ConnectResponse | ServiceError | "ended">;

  constructor(address: string, token: string) {
    this.client = new AgentServiceClient(address, credentials.createInsecure());
    const md = new Metadata();
    md.set("authorization", `Bearer ${token}`);
    this.call = this.client.connect(md);
    this.ended = new Promise((resolve) => {
      this.call.on("error", (err: ServiceError) => resolve(err));
      this.call.on("end", () => resolve("ended"));
    });
    this.helloAck = new Promise((resolve) => {
      this.call.on("data", (m: ConnectResponse) => {
        if (m.body?.$case === "helloAck") resolve(m);
        if (m.body?.$case === "opResultAck") this.acks.push(m.body.opResultAck.opId);
      });
      void this.ended.then(resolve);
    });
  }

  /** Says Hello as `host` (a volume host with `volumePools`); the HelloAck, or the status that ended the stream. */
  hello(host: string, volumePools: VolumePool[] = []): Promise<ConnectResponse | ServiceError | "ended"> {
    this.call.write({
      body: {
        $case: "hello",
        hello: {
          host,
          hypervisorType: "fake",
          version: "test",
          capacity: { vcpus: 8, memoryMb: 16384, diskGb: 200 },
          zone: "",
          migrationUri: "",
          architecture: "",
          allocation: undefined,
          natsPublicKey: "",
          tunnelIp: "",
          volumePools,
        },
      },
    });
    return this.helloAck;
  }

  report(serverIds: string[], volumePools: VolumePool[] = []): void {
    this.call.write({
      body: {
        $case: "report",
        report: {
          capacity: { vcpus: 8, memoryMb: 16384, diskGb: 200 },
          freeMemoryMb: 16384,
          freeDiskGb: 200,
          instances: serverIds.map((serverId) => ({ serverId, powerState: PowerState.POWER_STATE_RUNNING })),
          time: new Date(),
          volumePools,
        },
      },
    });
  }

  /** Reports op `opId` done without error (a snapshot op also says what it stored). */
  result(opId: string, serverId: string, snapshot?: SnapshotInfo): void {
    this.call.write({
      body: {
        $case: "opResult",
        opResult: { opId, serverId, note: "", error: undefined, powerState: PowerState.POWER_STATE_RUNNING, startTime: new Date(), finishTime: new Date(), snapshot, volumeId: "", volume: undefined },
      },
    });
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

export function code(r: ConnectResponse | ServiceError | "ended"): number | "helloAck" | "ended" {
  if (r === "ended") return r;
  if ("code" in r) return r.code;
  return "helloAck";
}
