package migrate

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/ptrace"
)

// TestSendStagesExactImage: a process rewrites 5 % of its pages a second
// while it is streamed with pre-copy rounds; once the source is frozen at
// the end of the stream, every page of the image the receiver assembled
// (newest pre-copy copies plus frozen-pass pages) equals the source's
// memory. Abort then resumes the source, which finds all its pages
// consistent (PASS) and keeps no userfaultfd.
func TestSendStagesExactImage(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "dirtier", false)
	p := proctest.Start(t, bin, "64", "50")
	p.Lines.Expect(t, "READY")
	pr, pw := io.Pipe()
	type got struct {
		st    *ReceiveStats
		stage *Stage
		err   error
	}
	gc := make(chan got, 1)
	go func() {
		st := &ReceiveStats{}
		tree, stage, err := receive(context.Background(), pr, st, nil)
		if err == nil && tree.Root != p.PID {
			t.Errorf("tree root %d, want %d", tree.Root, p.PID)
		}
		io.Copy(io.Discard, pr)
		gc <- got{st, stage, err}
	}()
	sent, err := Send(context.Background(), p.PID, pw, SendOptions{SmallBytes: 1 << 20})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	g := <-gc
	if g.err != nil {
		sent.Abort()
		t.Fatal(g.err)
	}
	st := sent.Stats
	t.Logf("%d rounds %+v, pre-copied %d KiB, final %d KiB, reused %d KiB, frozen %v; received %d rounds, staged %d KiB",
		len(st.Rounds), st.Rounds, st.PreCopied>>10, st.Final>>10, st.Reused>>10, sent.Frozen(), g.st.Rounds, g.st.Staged>>10)
	if len(st.Rounds) < 2 || g.st.Rounds != len(st.Rounds) {
		t.Errorf("%d rounds sent, %d received; want at least 2", len(st.Rounds), g.st.Rounds)
	}
	if st.Reused < 48<<20 || st.Final > st.Reused/4 {
		t.Errorf("frozen pass sent %d KiB and reused %d KiB: the pre-copy did not carry the image", st.Final>>10, st.Reused>>10)
	}
	mem, err := ptrace.OpenMem(p.PID)
	if err != nil {
		sent.Abort()
		t.Fatal(err)
	}
	var checked uint64
	rs, _ := g.stage.Ranges(p.PID)
	for _, rg := range rs {
		want := make([]byte, rg.Len)
		have := make([]byte, rg.Len)
		if err := mem.Read(rg.Addr, want); err != nil {
			t.Errorf("reading the source at %#x: %v", rg.Addr, err)
			continue
		}
		if err := g.stage.ReadPages(p.PID, rg.Addr, have); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, have) {
			for off := 0; off < len(want); off += 4096 {
				if !bytes.Equal(want[off:off+4096], have[off:off+4096]) {
					t.Errorf("page %#x differs from the source", rg.Addr+uint64(off))
					break
				}
			}
		}
		checked += rg.Len
	}
	mem.Close()
	if checked < 64<<20 {
		t.Errorf("the image holds %d KiB, want at least 64 MiB", checked>>10)
	}
	if err := sent.Abort(); err != nil {
		t.Fatal(err)
	}
	if s := proctest.State(p.PID); s == 't' || s == 'T' {
		t.Errorf("source left stopped (%c)", s)
	}
	fds, _ := os.ReadDir("/proc/" + itoa(p.PID) + "/fd")
	for _, e := range fds {
		if l, _ := os.Readlink("/proc/" + itoa(p.PID) + "/fd/" + e.Name()); strings.Contains(l, "userfaultfd") {
			t.Errorf("userfaultfd left in the source as fd %s", e.Name())
		}
	}
	syscall.Kill(p.PID, syscall.SIGUSR2)
	p.Lines.Expect(t, "PASS")
}

// TestSendToDeadReceiver: the receiver goes away during the pre-copy;
// Send fails and the source runs on untouched.
func TestSendToDeadReceiver(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "dirtier", false)
	p := proctest.Start(t, bin, "64", "50")
	p.Lines.Expect(t, "READY")
	pr, pw := io.Pipe()
	go func() {
		// Read the hello and a few MiB, then hang up.
		io.CopyN(io.Discard, pr, 8<<20)
		pr.CloseWithError(io.ErrClosedPipe)
	}()
	_, err := Send(context.Background(), p.PID, pw, SendOptions{})
	if err == nil || !strings.Contains(err.Error(), "runs on") {
		t.Fatalf("Send: %v; want an error saying the process runs on", err)
	}
	t.Log(err)
	if s := proctest.State(p.PID); s == 't' || s == 'T' {
		t.Errorf("source left stopped (%c)", s)
	}
	syscall.Kill(p.PID, syscall.SIGUSR2)
	p.Lines.Expect(t, "PASS")
}

func itoa(n int) string { return strconv.Itoa(n) }
