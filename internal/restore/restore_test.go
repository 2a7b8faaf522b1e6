package restore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/restore"
)

// restored is a tree brought back by cycle.
type restored struct {
	res   *restore.Result
	lines *proctest.Lines
	tree  *image.Tree
}

// cycle starts a fixture, waits for READY, dumps it (checking it stays
// frozen), kills it, restores it with the same PIDs, and returns the restored
// tree with its output. ready is the READY line.
func cycle(t *testing.T, bin string, args ...string) (*restored, string) {
	t.Helper()
	return cycleOpts(t, restore.Options{}, bin, args...)
}

// beforeRestore, when set, runs between the kill and the restore (to
// change the world the way another machine or a reboot would).
var beforeRestore func(t *testing.T, tree *image.Tree)

// cycleOpts is cycle with restore options (Stdout and Stderr are the
// test's pipe).
func cycleOpts(t *testing.T, opts restore.Options, bin string, args ...string) (*restored, string) {
	t.Helper()
	p := proctest.Start(t, bin, args...)
	ready := p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID))
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if s := proctest.State(p.PID); s != 't' {
		t.Errorf("dumped process in state %q, want t (frozen)", s)
	}
	// The image goes through its JSON encoding, as it would through storage.
	b, err := image.Encode(tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Kill(tree); err != nil {
		t.Fatal(err)
	}
	p.KillAndReap(t)
	for _, ip := range tree.Processes {
		proctest.WaitGone(t, ip.PID)
	}
	tree2, err := image.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if beforeRestore != nil {
		beforeRestore(t, tree2)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	opts.Stdout, opts.Stderr = w, w
	res, err := restore.Restore(context.Background(), tree2, pages, opts)
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	for _, warn := range res.Warnings {
		t.Logf("restore warning: %s", warn)
	}
	if res.Root != p.PID {
		t.Errorf("restored root is %d, want %d", res.Root, p.PID)
	}
	cmdline2, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	exe2, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID))
	if string(cmdline2) != string(cmdline) || exe2 != exe {
		t.Errorf("restored cmdline %q exe %q, want %q %q", cmdline2, exe2, cmdline, exe)
	}
	t.Cleanup(func() {
		for _, pid := range res.PIDs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_, _ = res.Wait()
	})
	lines := proctest.NewLines(r)
	lines.Diag = func() string { return proctest.Describe(res.Root) }
	return &restored{res: res, lines: lines, tree: tree2}, ready
}

// expectPass signals the restored root with SIGUSR2 and checks PASS with the
// same PID and nonce, that start-up did not run again, and exit status 0.
func (rs *restored) expectPass(t *testing.T, ready string) {
	t.Helper()
	f := strings.Fields(ready) // READY pid nonce
	// Wait until the restored root is back asleep: a program that checks a
	// flag and then sleeps cannot tell a signal sent before it re-entered
	// its sleep from one sent before it checked.
	for i := 0; i < 5000 && proctest.State(rs.res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	if err := rs.res.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	pass := rs.lines.Expect(t, "PASS")
	if want := fmt.Sprintf("PASS %s %s", f[1], f[2]); pass != want {
		t.Errorf("got %q, want %q (same PID and nonce)", pass, want)
	}
	ws, err := rs.res.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("restored root ended with %v", ws)
	}
	for _, l := range rs.lines.All() {
		if strings.HasPrefix(l, "START") {
			t.Errorf("start-up ran again after restore: %q", l)
		}
	}
}

func TestBasic(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "basic", static)
			rs, ready := cycle(t, bin, t.TempDir())
			rs.expectPass(t, ready)
		})
	}
}

const pyScript = `
import os, signal, sys, time, threading, hashlib
nonce = os.urandom(8).hex()
print("START", os.getpid(), flush=True)
got = []
signal.signal(signal.SIGUSR2, lambda s, f: got.append(s))
data = {i: str(i) * 3 for i in range(100000)}
ev = threading.Event()
def worker():
    ev.wait()
    got.append("thread")
th = threading.Thread(target=worker)
th.start()
digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()
t0 = time.monotonic()
print("READY", os.getpid(), nonce, flush=True)
while not got:
    time.sleep(0.05)
ev.set()
th.join()
assert hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest() == digest
assert time.monotonic() >= t0
print("PASS", os.getpid(), nonce, flush=True)
`

func TestPython(t *testing.T) {
	proctest.RequireRoot(t)
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	rs, ready := cycle(t, py, "-c", pyScript)
	rs.expectPass(t, ready)
}

func TestThreads(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "threads", static)
			rs, ready := cycle(t, bin)
			if n := len(rs.tree.Processes[0].Threads); n != 6 {
				t.Errorf("image has %d threads, want 6", n)
			}
			rs.expectPass(t, ready)
		})
	}
}

func TestTree(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "tree", false)
	rs, ready := cycle(t, bin, t.TempDir())
	if n := len(rs.tree.Processes); n != 6 {
		t.Errorf("image has %d processes, want 6", n)
	}
	rs.expectPass(t, ready)
}

// TestSharedWritableFileMovedOn: a file the process maps shared and
// writable is written after the dump (as a JVM's hsperfdata is, by the
// process itself, until it is killed): the restore takes it as it is now,
// with a warning, instead of refusing it as a changed file.
func TestSharedWritableFileMovedOn(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "misc", false)
	dir := t.TempDir()
	beforeRestore = func(t *testing.T, _ *image.Tree) {
		f, err := os.OpenFile(filepath.Join(dir, "shared"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		later := time.Now().Add(time.Second)
		if _, err := f.WriteAt([]byte("moved on"), 8000); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.Name(), later, later); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { beforeRestore = nil }()
	rs, ready := cycle(t, bin, dir)
	warned := false
	for _, w := range rs.res.Warnings {
		warned = warned || strings.Contains(w, "mapped shared and writable")
	}
	if !warned {
		t.Errorf("no warning about the shared file that moved on: %q", rs.res.Warnings)
	}
	rs.expectPass(t, ready)
}

func TestMisc(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "misc", static)
			rs, ready := cycle(t, bin, t.TempDir())
			// The pipes whose other side closed are the tree's, not outside.
			tail := 0
			for _, pp := range rs.tree.Pipes {
				if string(pp.Data) == "tail" {
					tail++
				}
			}
			// (An fd the test runner leaked in may add a pipe of its own.)
			if len(rs.tree.Pipes) < 2 || tail != 1 {
				t.Errorf("image has %d pipes, %d with the queued \"tail\"; want at least 2, and 1", len(rs.tree.Pipes), tail)
			}
			rs.expectPass(t, ready)
		})
	}
}
