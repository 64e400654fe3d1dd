/** The compute agent: the Agent, its op executor and bus, and the drivers. */
export { Agent, type AgentInit, type AgentOptions, type AgentState } from "./agent.js";
export { OpConsumer, type OpConsumerOptions, type OpDelivery } from "./bus/op-consumer.js";
export { ExecutorClosedError, OpExecutor, type Execution, type OpExecutorOptions } from "./ops/executor.js";
export * from "./drivers/index.js";
