/**
 * Periodic resource reports: capacity, free memory and disk, every
 * instance's power state, read from the driver, and a volume host's pools,
 * sent through `send`.
 * A report still being taken when the next is due is not doubled up.
 */
import type { Logger } from "pino";
import type { ResourceReport } from "../../gen/novamesh/agent/v1/agent.js";
import type { Driver } from "../drivers/driver.js";
import { reportToProto, volumePoolsOf } from "../proto-convert.js";
import type { VolumeBackend } from "../volume/backend.js";

/** Reads a ResourceReport from the driver (and the volume backend's pools, on a volume host). */
export async function takeReport(driver: Driver, log: Logger, volumes?: VolumeBackend, signal?: AbortSignal): Promise<ResourceReport> {
  const [capacity, report, pools] = await Promise.all([driver.capacity({ signal }), driver.report({ signal }), volumes ? volumePoolsOf(volumes, log) : []]);
  return reportToProto(capacity, report, new Date(), pools);
}

/** Sends a report now and then every `intervalSeconds` until stopped. */
export class ResourceReporter {
  private timer: NodeJS.Timeout | undefined;
  private inProgress: Promise<void> | undefined;
  private soon: NodeJS.Timeout | undefined;
  /** A change came while a report was being taken: report again, after this many ms. */
  private again: number | undefined;

  constructor(
    private readonly driver: Driver,
    private readonly send: (report: ResourceReport) => void,
    private readonly logger: Logger,
    private readonly volumes?: VolumeBackend,
  ) {}

  /** Starts (or restarts) reporting: one report now, then every interval. */
  start(intervalSeconds: number): void {
    this.stop();
    void this.reportNow();
    this.timer = setInterval(() => void this.reportNow(), intervalSeconds * 1000);
    this.timer.unref();
  }

  /** Stops the timer; a report being taken still completes. */
  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
    this.timer = undefined;
    this.soon = undefined;
  }

  /**
   * A report shortly (`delayMs`, so a burst of hypervisor events makes one
   * report), and one more after a report being taken now, which may have
   * read the state before the change. Only while started.
   */
  reportSoon(delayMs = 250): void {
    if (this.timer === undefined) return;
    if (this.inProgress) {
      this.again = Math.min(this.again ?? delayMs, delayMs);
      return;
    }
    this.soon ??= setTimeout(() => {
      this.soon = undefined;
      void this.reportNow();
    }, delayMs);
  }

  /** Takes and sends one report unless one is already being taken. */
  reportNow(): Promise<void> {
    this.inProgress ??= takeReport(this.driver, this.logger, this.volumes)
      .then((report) => this.send(report))
      .catch((err: unknown) => this.logger.warn({ err }, "could not take a resource report"))
      .finally(() => {
        this.inProgress = undefined;
        if (this.again !== undefined) {
          const delay = this.again;
          this.again = undefined;
          this.reportSoon(delay);
        }
      });
    return this.inProgress;
  }
}
