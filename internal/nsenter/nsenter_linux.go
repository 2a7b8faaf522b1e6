// Package nsenter runs Go code inside another process's namespaces: a
// function runs on an OS thread that joined the namespace with setns and is
// thrown away afterwards, so no other goroutine ever runs there. Sockets
// and interfaces created by the function belong to the joined network
// namespace for good, whichever thread uses them later.
package nsenter

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Run runs fn on a thread that joined namespace ns (a /proc/PID/ns/* file,
// or one from NewNet) of type nstype (unix.CLONE_NEWNET, ...).
func Run(ns *os.File, nstype int, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(int(ns.Fd()), nstype); err != nil {
			done <- fmt.Errorf("joining namespace %s: %w", ns.Name(), err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// RunPID is Run in namespace name ("net", "uts", ...) of process pid.
func RunPID(pid int, name string, nstype int, fn func() error) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
	if err != nil {
		return fmt.Errorf("opening the %s namespace of process %d: %w", name, pid, err)
	}
	defer f.Close()
	return Run(f, nstype, fn)
}

// NewNet creates a network namespace (only a loopback, down) and returns a
// file that keeps it alive until closed.
func NewNet() (*os.File, error) {
	type res struct {
		f   *os.File
		err error
	}
	done := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // the thread is in the new namespace: never reused
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- res{nil, fmt.Errorf("creating a network namespace: %w", err)}
			return
		}
		f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		done <- res{f, err}
	}()
	r := <-done
	return r.f, r.err
}
