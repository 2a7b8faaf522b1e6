package restore_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

// TestInetSockets restores TCP listeners, established loopback
// connections with both ends in the tree (queues, unacknowledged and
// unsent data) and UDP sockets (testdata/cprog/inet.c).
func TestInetSockets(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "inet", static)
			rs, ready := cycle(t, bin)
			var est, unsent, listen, udpq int
			for _, s := range rs.tree.Inet {
				switch {
				case s.State == image.InetListen:
					listen++
				case s.TCP != nil:
					est++
					unsent += s.TCP.Unsent
				}
				udpq += len(s.Queue)
			}
			t.Logf("%d listeners, %d connections (%d bytes unsent), %d datagrams queued", listen, est, unsent, udpq)
			if listen < 1 || est < 4 || udpq != 5 {
				t.Errorf("image has %d listeners, %d connections, %d datagrams; want >= 1, >= 4, 5", listen, est, udpq)
			}
			rs.expectPass(t, ready)
		})
	}
}

// TestTCPOutsidePeer dumps, kills and restores a process whose TCP
// connection leads to a peer outside the tree (this test): the peer's
// socket is never closed or reset, data it sent before the dump and after
// the restore arrives in order, and the answer comes back on the same
// connection.
func TestTCPOutsidePeer(t *testing.T) {
	proctest.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(conns)
			return
		}
		_, _ = c.Write([]byte("pre"))
		conns <- c
	}()
	bin := proctest.Build(t, "inet", false)
	rs, ready := cycle(t, bin, "outside", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	c := <-conns
	if c == nil {
		t.Fatal("no connection from the fixture")
	}
	defer c.Close()
	if n := len(rs.tree.Inet); n != 1 || rs.tree.Inet[0].TCP == nil || string(rs.tree.Inet[0].TCP.RecvQueue) != "pre" {
		t.Fatalf("image has %d inet sockets, want one connection with \"pre\" queued", n)
	}
	if _, err := c.Write([]byte("post")); err != nil {
		t.Fatalf("writing on the outside connection after restore: %v", err)
	}
	rs.expectPass(t, ready)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	n, err := io.ReadAtLeast(c, b, len("echo:prepost"))
	if err != nil || string(b[:n]) != "echo:prepost" {
		t.Fatalf("outside peer read %q, %v; want \"echo:prepost\"", b[:n], err)
	}
}

// TestInetLeaveRunning dumps the inet fixture and lets it run on: every
// connection leaves repair mode and the process finds its sockets as they
// were.
func TestInetLeaveRunning(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "inet", false)
	p := proctest.Start(t, bin)
	p.Lines.Expect(t, "READY")
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{LeaveRunning: true}, proctest.NewPages())
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Finish(tree); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5000 && proctest.State(p.PID) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = syscall.Kill(p.PID, syscall.SIGUSR2)
	p.Lines.Expect(t, "PASS")
}
