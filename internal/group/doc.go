// Package group holds ckpt's distributed checkpointing: the protocol cores
// (coord, cl, msglog, cic, recline) are pure state machines with no
// goroutines, clocks or sockets; the network loop that drives them (the
// coordinator server and its wire messages) lives in this package and the
// rank client in the root package (group.go). docs/GROUP.md describes the
// protocols and their guarantees.
package group
