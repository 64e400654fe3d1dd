/** Agent version sent in Hello. Keep in step with package.json. */
export const AGENT_VERSION = "0.1.0";
