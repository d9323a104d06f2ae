// The agent's version, as Check reports it: kuasar's package version (a unit test keeps the two
// equal). A constant, because the bundled agent in the guest has no package.json to read.
export const AGENT_VERSION = '0.1.0';
