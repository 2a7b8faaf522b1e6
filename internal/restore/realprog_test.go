package restore_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

// goTool finds the go command that runs these tests.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command to build testdata/goprog: %v", err)
	}
	return p
}

// TestGoProgram dumps a Go program of our own (testdata/goprog, built here
// with go build, static) in the middle of its work: goroutines hashing,
// a ticker, a pending hour-long timer, and a TCP client and server in the
// same process exchanging 3000 round trips over one loopback connection.
// Restored with the same PID, it finishes with the same connection (same
// local address, one accept), the hashes equal a fresh computation, the
// ticker still ticks and the timer is still pending.
func TestGoProgram(t *testing.T) {
	proctest.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "goprog")
	src, err := filepath.Abs("../../testdata/goprog/main.go")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(goTool(t), "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/goprog: %v\n%s", err, out)
	}
	rs, ready := cycle(t, bin)
	p := rs.tree.Processes[0]
	if len(p.Threads) < 3 {
		t.Errorf("image has %d threads, want the Go runtime's several", len(p.Threads))
	}
	conns := 0
	for _, s := range rs.tree.Inet {
		if s.State == image.InetEstablished {
			conns++
		}
	}
	if conns != 2 {
		t.Errorf("image has %d established TCP sockets, want both ends of the connection", conns)
	}
	rs.expectPass(t, ready)
}
