// Package agent is the per-node ckpt agent (docs/AGENT.md): an HTTP server
// that holds, per group, a local blob store (DATA_DIR/GROUP, a
// backend.Local) and a fragment store, serves them to clients and peers
// (internal/backend's Agent is the client), and moves committed
// checkpoints up the levels in the background (internal/levels): partner
// copy, Reed-Solomon fragments across k+m agents, durable storage.
//
// Every group request is authenticated with the group's token; health,
// Prometheus metrics and a status page are served beside the API.
package agent
