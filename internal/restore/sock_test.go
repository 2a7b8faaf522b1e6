package restore_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

// TestUnixSockets restores socketpairs, listeners, accepted connections and
// datagram sockets with their queued data (testdata/cprog/sockets.c).
func TestUnixSockets(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "sockets", static)
			rs, ready := cycle(t, bin, t.TempDir())
			if len(rs.tree.Processes) != 2 {
				t.Errorf("image has %d processes, want 2", len(rs.tree.Processes))
			}
			queued := 0
			for _, s := range rs.tree.Sockets {
				queued += len(s.Queue)
			}
			if n := len(rs.tree.Sockets); n != 15 || queued != 11 {
				t.Errorf("image has %d sockets with %d queued messages, want 15 and 11", n, queued)
			}
			rs.expectPass(t, ready)
		})
	}
}

// TestUnixSocketRefused checks the refusals: a unix socket connected to a
// process outside the tree (named with the peer), whether the listener has
// accepted the connection or not, and a descriptor in flight.
func TestUnixSocketRefused(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "refuse", false)
	dir := t.TempDir()
	accepting, pending := filepath.Join(dir, "accepting.sock"), filepath.Join(dir, "pending.sock")
	ln, err := net.Listen("unix", accepting)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	// Never accepts: the client's peer stays in the accept queue.
	lnPending, err := net.Listen("unix", pending)
	if err != nil {
		t.Fatal(err)
	}
	defer lnPending.Close()
	for _, tc := range []struct{ name, what, arg, want string }{
		{"unix-outside", "unix-outside", accepting, "outside the tree"},
		{"unix-not-accepted", "unix-outside", pending, "has not accepted the connection yet"},
		{"scm-rights", "scm-rights", "", "SCM_RIGHTS: pipe:["}, // the fixture sends its stdout, a pipe
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := proctest.Start(t, bin, tc.what, tc.arg)
			p.Lines.Expect(t, "READY")
			if tc.arg == accepting {
				c := <-accepted
				defer c.Close()
			}
			_, err := dump.Dump(context.Background(), p.PID, dump.Options{}, proctest.NewPages())
			if err == nil || !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "process "+strconv.Itoa(p.PID)) {
				t.Fatalf("got %v, want a refusal naming process %d and %q", err, p.PID, tc.want)
			}
			if tc.arg != "" && !strings.Contains(err.Error(), tc.arg) {
				t.Errorf("refusal %q does not name the peer %s", err, tc.arg)
			}
			t.Log(err)
			_ = syscall.Kill(p.PID, syscall.SIGUSR2)
			p.Lines.Expect(t, "PASS")
		})
	}
}

// TestUnixDatagramOutside restores a datagram socket connected to a named
// socket outside the tree (syslog's /dev/log) by connecting it to the name
// again, and leaves it unconnected, with a warning, when the name is gone
// (testdata/cprog/syslog.c).
func TestUnixDatagramOutside(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "syslog", false)
	for _, gone := range []bool{false, true} {
		t.Run(map[bool]string{false: "reconnected", true: "gone"}[gone], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.sock")
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			args := []string{path}
			if gone {
				args = append(args, "gone")
				beforeRestore = func(t *testing.T, _ *image.Tree) { ln.Close() }
				defer func() { beforeRestore = nil }()
			}
			rs, ready := cycle(t, bin, args...)
			var s *image.UnixSocket
			for _, x := range rs.tree.Sockets {
				s = x
			}
			if len(rs.tree.Sockets) != 1 || s.PeerName != path || s.Peer != 0 {
				t.Fatalf("image sockets %+v, want one connected outside to %s", rs.tree.Sockets, path)
			}
			warned := false
			for _, w := range rs.res.Warnings {
				warned = warned || strings.Contains(w, path) && strings.Contains(w, "left unconnected")
			}
			if warned != gone {
				t.Errorf("warnings %q: want one about %s: %v", rs.res.Warnings, path, gone)
			}
			rs.expectPass(t, ready)
			if gone {
				return
			}
			b := make([]byte, 16)
			for _, want := range []string{"before", "after"} {
				_ = ln.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, err := ln.Read(b)
				if err != nil || string(b[:n]) != want {
					t.Fatalf("outside peer read %q, %v; want %q", b[:n], err, want)
				}
			}
		})
	}
}

// TestSCMRights restores descriptors in flight (SCM_RIGHTS) on seqpacket
// and datagram sockets: a file whose only other descriptor was closed
// (its offset kept), /dev/null and a directory (testdata/cprog/scm.c).
func TestSCMRights(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "scm", false)
	rs, ready := cycle(t, bin, t.TempDir())
	n := 0
	for _, s := range rs.tree.Sockets {
		for _, in := range s.Rights {
			n += len(in.FDs)
		}
	}
	if n != 3 {
		t.Errorf("image has %d descriptors in flight, want 3", n)
	}
	rs.expectPass(t, ready)
}
