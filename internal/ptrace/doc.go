// Package ptrace wraps the Linux x86-64 ptrace interface for the dumper and
// the restorer.
//
// Every ptrace request after attach must come from the thread that attached,
// and wait4 on a tracee only sees its stops from the tracer thread's group, so
// a Tracer owns one goroutine locked to an OS thread; every ptrace call, every
// wait and every fork of a traced helper runs there (closures sent over a
// channel, the Delve design). Memory access (process_vm_readv/writev and
// /proc/PID/mem) does not need the tracer thread.
//
// Raw structures that golang.org/x/sys/unix lacks (clone3 arguments,
// prctl_mm_map, regset iovecs, siginfo peeking) are defined in *_unsafe.go
// files; no other file imports unsafe.
package ptrace
