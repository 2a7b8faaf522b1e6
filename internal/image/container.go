package image

// Container is the namespaces' state of a container checkpoint (`ckpt run
// --isolate`, internal/container). When a Tree has one, its PIDs, TIDs,
// PPIDs, process groups and sessions are those seen inside the
// container's own PID namespace, its root is PID 1 there, and a restore
// recreates the namespaces before the processes.
type Container struct {
	Name     string `json:"name,omitempty"`
	Hostname string `json:"hostname"`
	// Monotonic and Boottime are the container's CLOCK_MONOTONIC and
	// CLOCK_BOOTTIME when it was frozen, in nanoseconds. A restore gives
	// the new time namespace offsets that make both clocks go on from
	// these values: they do not jump across the downtime or a reboot.
	Monotonic int64 `json:"monotonic_ns"`
	Boottime  int64 `json:"boottime_ns"`
	// Net lists the network interfaces of the container's network
	// namespace.
	Net []NetIf `json:"net,omitempty"`
}

// NetIf is a network interface of a container.
type NetIf struct {
	Name  string   `json:"name"`
	Up    bool     `json:"up,omitempty"`
	Addrs []string `json:"addrs,omitempty"` // CIDR, e.g. 10.200.0.2/24
	// Veth is set for the container end of a veth pair created by ckpt;
	// Peer is the host end's name and PeerAddrs its addresses.
	Veth      bool     `json:"veth,omitempty"`
	Peer      string   `json:"peer,omitempty"`
	PeerAddrs []string `json:"peer_addrs,omitempty"`
}
