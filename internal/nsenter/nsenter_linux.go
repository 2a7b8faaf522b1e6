// Package nsenter runs Go code inside another process's namespaces: a
// function runs on an OS thread that joined the namespace with setns and is
// thrown away afterwards, so no other goroutine ever runs there. Sockets
// and interfaces created by the function belong to the joined network
// namespace for good, whichever thread uses them later. PIDs reads where a
// task sits in nested PID namespaces.
package nsenter

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NS is a namespace to join: a /proc/PID/ns/* file (or one from New) and
// its type (unix.CLONE_NEWNET, ...).
type NS struct {
	File *os.File
	Type int
}

// Run runs fn on a thread that joined namespace ns (a /proc/PID/ns/* file,
// or one from New) of type nstype (unix.CLONE_NEWNET, ...).
func Run(ns *os.File, nstype int, fn func() error) error {
	return RunMany([]NS{{ns, nstype}}, fn)
}

// RunMany runs fn on a thread that joined every namespace of nss.
func RunMany(nss []NS, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		for _, ns := range nss {
			if err := unix.Setns(int(ns.File.Fd()), ns.Type); err != nil {
				done <- fmt.Errorf("joining namespace %s: %w", ns.File.Name(), err)
				return
			}
		}
		done <- fn()
	}()
	return <-done
}

// RunPID is Run in namespace name ("net", "uts", ...) of process pid.
func RunPID(pid int, name string, nstype int, fn func() error) error {
	return RunPIDMany(pid, map[string]int{name: nstype}, fn)
}

// RunPIDMany is RunMany in the namespaces of process pid named by the
// keys of types ("net", "ipc", ...), of the types of their values.
func RunPIDMany(pid int, types map[string]int, fn func() error) error {
	var nss []NS
	for name, t := range types {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
		if err != nil {
			return fmt.Errorf("opening the %s namespace of process %d: %w", name, pid, err)
		}
		defer f.Close()
		nss = append(nss, NS{f, t})
	}
	return RunMany(nss, fn)
}

// NewNet creates a network namespace (only a loopback, down) and returns a
// file that keeps it alive until closed.
func NewNet() (*os.File, error) { return New(unix.CLONE_NEWNET, "net") }

// New creates a namespace of type nstype (named name in /proc/PID/ns:
// "net", "ipc", ...) and returns a file that keeps it alive until closed.
func New(nstype int, name string) (*os.File, error) {
	type res struct {
		f   *os.File
		err error
	}
	done := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // the thread is in the new namespace: never reused
		if err := unix.Unshare(nstype); err != nil {
			done <- res{nil, fmt.Errorf("creating a %s namespace: %w", name, err)}
			return
		}
		f, err := os.Open(fmt.Sprintf("/proc/thread-self/ns/%s", name))
		done <- res{f, err}
	}()
	r := <-done
	return r.f, r.err
}

// PIDs returns the NSpid line of task tid of process pid: its id in every
// PID namespace from ours inwards.
func PIDs(pid, tid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return nil, fmt.Errorf("task %d: %w", tid, err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(l, []byte("NSpid:"))
		if !ok {
			continue
		}
		var ids []int
		for _, f := range strings.Fields(string(rest)) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("task %d: bad NSpid %q", tid, rest)
			}
			ids = append(ids, n)
		}
		return ids, nil
	}
	return nil, fmt.Errorf("task %d: no NSpid in status", tid)
}
