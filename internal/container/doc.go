// Package container runs a program as PID 1 of its own PID, mount, UTS,
// IPC, network and time namespaces inside a cgroup v2 group (`ckpt run
// --isolate`), and reads and recreates the namespaces' state that a
// whole-container checkpoint records (hostname, clock offsets, network
// addresses). The process dump and restore themselves are internal/dump and
// internal/restore; this package freezes the cgroup around the dump and
// sets up the namespaces. See docs/CONTAINERS.md.
package container
