import { ConfigError, configHelp, loadConfig } from "./config.js";
import { bestEffort } from "./best-effort.js";
import { Controller } from "./controller.js";

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(configHelp());
    return;
  }
  let config;
  try {
    config = loadConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`novamesh-controller: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const controller = new Controller(config);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    controller.log.info({ signal }, "stopping");
    controller.stop().then(
      () => process.exit(0),
      (err) => {
        controller.log.error({ err }, "unclean stop");
        process.exit(1);
      },
    );
  };
  // A promise rejection nothing handled is a defect; it is logged and
  // counted, and the controller keeps serving (Node's default would end the
  // process, and with it every agent's stream and every call in flight).
  process.on("unhandledRejection", (reason) => {
    controller.metrics?.unhandledRejections.inc();
    controller.log.error({ err: reason }, "unhandled promise rejection (a defect); the controller keeps running");
  });
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  try {
    await controller.start();
  } catch (err) {
    if (err instanceof ConfigError) {
      // Bad configuration found while starting (a certificate file): the flag, not a stack.
      console.error(`novamesh-controller: ${err.message}`);
      await bestEffort(controller.log, "stopping what had started", () => controller.stop());
      process.exit(2);
    }
    controller.log.fatal({ err }, "controller failed to start");
    await bestEffort(controller.log, "stopping what had started", () => controller.stop());
    process.exit(1);
  }
}

void main();
