//go:build linux

package dirty_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ckpt/ckpt/internal/dirty"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// fixture runs dirtier in command mode.
type fixture struct {
	pid    int
	in     io.WriteCloser
	lines  *proctest.Lines
	region dirty.Range
}

func startDirtier(t *testing.T, mib int) *fixture {
	t.Helper()
	bin := proctest.Build(t, "dirtier", false)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, strconv.Itoa(mib), "cmd")
	cmd.Stdout, cmd.Stderr = w, w
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	f := &fixture{pid: cmd.Process.Pid, in: in, lines: proctest.NewLines(r)}
	reg := strings.Fields(f.lines.Expect(t, "REGION"))
	a, _ := strconv.ParseUint(reg[1], 16, 64)
	n, _ := strconv.ParseUint(reg[2], 16, 64)
	f.region = dirty.Range{Addr: a, Len: n}
	f.lines.Expect(t, "READY")
	return f
}

// write asks the fixture to write n random pages and returns their addresses.
func (f *fixture) write(t *testing.T, n int) map[uint64]bool {
	t.Helper()
	if _, err := fmt.Fprintf(f.in, "w %d\n", n); err != nil {
		t.Fatal(err)
	}
	out := map[uint64]bool{}
	for _, s := range strings.Fields(f.lines.Expect(t, "WROTE"))[1:] {
		a, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		out[a] = true
	}
	f.lines.Expect(t, "DONE")
	return out
}

// startTracker stops pid briefly with ptrace and starts a tracker in it.
func startTracker(t *testing.T, pid int) *dirty.Tracker {
	t.Helper()
	tr := ptrace.NewTracer()
	defer tr.Close()
	var tk *dirty.Tracker
	err := tr.Do(func() error {
		if err := ptrace.Seize(pid, ptrace.OptsDump); err != nil {
			return err
		}
		defer ptrace.Detach(pid, 0)
		if err := ptrace.Interrupt(pid); err != nil {
			return err
		}
		for {
			ws, err := ptrace.Wait(pid)
			if err != nil {
				return err
			}
			if ws.Stopped() && ptrace.Event(ws) == unix.PTRACE_EVENT_STOP {
				break
			}
			if err := ptrace.Cont(pid, 0); err != nil {
				return err
			}
		}
		sys, err := vdsoSyscall(pid)
		if err != nil {
			return err
		}
		in, err := ptrace.NewInjector(pid, sys)
		if err != nil {
			return err
		}
		defer in.Restore()
		tk, err = dirty.Start(pid, in)
		return err
	})
	if errors.Is(err, dirty.ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tk.Close() })
	return tk
}

func vdsoSyscall(pid int) (uint64, error) {
	b, err := procfs.Read(pid, "maps")
	if err != nil {
		return 0, err
	}
	maps, err := procfs.ParseMaps(b)
	if err != nil {
		return 0, err
	}
	mem, err := ptrace.OpenMem(pid)
	if err != nil {
		return 0, err
	}
	defer mem.Close()
	for _, m := range maps {
		if m.Path == "[vdso]" {
			buf := make([]byte, m.End-m.Start)
			if err := mem.Read(m.Start, buf); err != nil {
				return 0, err
			}
			if i := bytes.Index(buf, []byte{0x0f, 0x05}); i >= 0 {
				return m.Start + uint64(i), nil
			}
		}
	}
	return 0, errors.New("no syscall instruction in the vdso")
}

func inside(rs []dirty.Range, r dirty.Range) []dirty.Range {
	var out []dirty.Range
	for _, x := range rs {
		a, e := max(x.Addr, r.Addr), min(x.End(), r.End())
		if a < e {
			out = append(out, dirty.Range{Addr: a, Len: e - a})
		}
	}
	return out
}

func fds(t *testing.T, pid int) []string {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		out = append(out, e.Name()+"->"+l)
	}
	return out
}

// TestTrackerExact: a real process writes known random pages; the tracker
// reports exactly those in the region, round after round, and leaves no
// descriptor in the target.
func TestTrackerExact(t *testing.T) {
	proctest.RequireRoot(t)
	f := startDirtier(t, 64)
	before := fds(t, f.pid)
	tk := startTracker(t, f.pid)
	if after := fds(t, f.pid); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("target fds changed by the tracker: %v -> %v", before, after)
	}
	first, err := tk.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := dirty.Bytes(inside(first, f.region)); got != f.region.Len {
		t.Fatalf("first Collect reports %d bytes of the region, want all %d", got, f.region.Len)
	}
	total := f.region.Pages()
	for round, n := range []int{1, 164, int(total / 100), 0} { // 1 % of 16384 pages
		want := f.write(t, n)
		got, err := tk.Collect()
		if err != nil {
			t.Fatal(err)
		}
		in := inside(got, f.region)
		c := dirty.NewCursor(in)
		missing := 0
		for a := uint64(0); a < f.region.Len; a += dirty.PageSize {
			if want[f.region.Addr+a] && !c.Contains(f.region.Addr+a) {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("round %d: %d of %d written pages not reported", round, missing, len(want))
		}
		if p := dirty.Bytes(in) / dirty.PageSize; p != uint64(len(want)) {
			t.Errorf("round %d: %d pages of the region reported, %d written", round, p, len(want))
		}
		// Outside the region only the fixture's own stack, stdio buffers
		// and the like: a few pages.
		if extra := (dirty.Bytes(got) - dirty.Bytes(in)) / dirty.PageSize; extra > 64 {
			t.Errorf("round %d: %d pages reported outside the region", round, extra)
		}
	}
	_ = syscall.Kill(f.pid, 0)
}

// TestTrackerAliveAcrossExec: a tracker follows one address space; after
// the process executes another program it says so (Alive false), so that a
// dump reads the new program's memory whole instead of trusting a tracker
// of memory nobody uses.
func TestTrackerAliveAcrossExec(t *testing.T) {
	proctest.RequireRoot(t)
	cmd := exec.Command("/bin/sh", "-c", `read x; exec /usr/bin/perl -e '$| = 1; print "EXECUTED\n"; sleep 100'`)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	tk := startTracker(t, cmd.Process.Pid)
	if _, err := tk.Collect(); err != nil {
		t.Fatal(err)
	}
	if !tk.Alive() {
		t.Fatal("tracker of a running process not alive")
	}
	if _, err := io.WriteString(in, "go\n"); err != nil {
		t.Fatal(err)
	}
	proctest.NewLines(r).Expect(t, "EXECUTED")
	if tk.Alive() {
		t.Fatal("tracker still alive after the process executed another program")
	}
}
