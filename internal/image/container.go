package image

import "net/netip"

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

// validate checks a container's state against its tree.
func (c *Container) validate(t *Tree) error {
	if t.Root != 1 || t.Processes[0].PPID != 0 {
		return invalid("container: the root is PID %d with parent %d, want PID 1 of its namespace with parent 0", t.Root, t.Processes[0].PPID)
	}
	if c.Monotonic < 0 || c.Boottime < 0 {
		return invalid("container: negative clock values (monotonic %d, boottime %d)", c.Monotonic, c.Boottime)
	}
	names := map[string]bool{}
	for _, n := range c.Net {
		if n.Name == "" || len(n.Name) > 15 || names[n.Name] {
			return invalid("container: bad or duplicate interface name %q", n.Name)
		}
		names[n.Name] = true
		if n.Veth && (n.Peer == "" || len(n.Peer) > 15) {
			return invalid("container: veth %s has a bad host end name %q", n.Name, n.Peer)
		}
		for _, a := range append(append([]string(nil), n.Addrs...), n.PeerAddrs...) {
			if _, err := netip.ParsePrefix(a); err != nil {
				return invalid("container: interface %s: address %q: %v", n.Name, a, err)
			}
		}
	}
	return nil
}
