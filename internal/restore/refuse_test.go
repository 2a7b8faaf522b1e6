package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/restore"
)

// TestRefused checks that unsupported resources are refused at dump time
// with the process, the fd or mapping and the kind named, and that the
// process is left running untouched.
func TestRefused(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "refuse", false)
	for _, tc := range []struct{ what, want string }{
		{"socket", "fd 3 is a socket (AF_NETLINK)"},
		{"pidfd", "fd 3 is pidfd"},
		{"fanotify", "fd 3 is fanotify"},
		{"sysv-partial", "a partial mapping of a System V shared memory segment"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			p := proctest.Start(t, bin, tc.what)
			p.Lines.Expect(t, "READY")
			_, err := dump.Dump(context.Background(), p.PID, dump.Options{}, proctest.NewPages())
			if err == nil || !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "process "+strconv.Itoa(p.PID)) {
				t.Fatalf("got %v, want a refusal naming process %d and %q", err, p.PID, tc.want)
			}
			if s := proctest.State(p.PID); s == 't' || s == 'T' {
				t.Fatalf("refused process left stopped (state %c)", s)
			}
			_ = syscall.Kill(p.PID, syscall.SIGUSR2)
			p.Lines.Expect(t, "PASS")
		})
	}
}

func TestPIDTaken(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", false)
	p := proctest.Start(t, bin, t.TempDir())
	p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{LeaveRunning: true}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Finish(tree); err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(context.Background(), tree, pages, restore.Options{})
	if !errors.Is(err, restore.ErrPIDInUse) || !strings.Contains(err.Error(), "PID "+strconv.Itoa(p.PID)) {
		t.Fatalf("restore over a live PID: %v", err)
	}
	// The original still runs.
	_ = syscall.Kill(p.PID, syscall.SIGUSR2)
	p.Lines.Expect(t, "PASS")
}

// killingWriter kills the process on the first page it receives.
type killingWriter struct {
	pid  int
	done bool
}

func (k *killingWriter) WritePages(pid int, addr uint64, b []byte) error {
	if !k.done {
		k.done = true
		_ = syscall.Kill(k.pid, syscall.SIGKILL)
		for i := 0; i < 1000 && proctest.State(k.pid) != 'Z' && proctest.State(k.pid) != 0; i++ {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

func TestExitDuringDump(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "threads", false)
	p := proctest.Start(t, bin)
	p.Lines.Expect(t, "READY")
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, &killingWriter{pid: p.PID})
	if err == nil {
		_ = dump.Kill(tree)
	}
	if err == nil || !strings.Contains(err.Error(), "exited during dump") {
		t.Fatalf("got %v, want an error saying the process exited during dump", err)
	}
	p.KillAndReap(t)
}

func TestChangedFileRefused(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", false)
	dir := t.TempDir()
	p := proctest.Start(t, bin, dir)
	p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Kill(tree); err != nil {
		t.Fatal(err)
	}
	p.KillAndReap(t)
	f, err := os.OpenFile(filepath.Join(dir, "basic-data"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("more"))
	f.Close()
	_, err = restore.Restore(context.Background(), tree, pages, restore.Options{})
	if !errors.Is(err, restore.ErrMismatch) || !strings.Contains(err.Error(), "basic-data changed since the dump") {
		t.Fatalf("got %v", err)
	}
	if _, serr := os.Stat("/proc/" + strconv.Itoa(tree.Root)); serr == nil {
		t.Errorf("a refused restore left process %d behind", tree.Root)
	}
}

func TestMachineChecks(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", false)
	p := proctest.Start(t, bin, t.TempDir())
	p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Kill(tree); err != nil {
		t.Fatal(err)
	}
	p.KillAndReap(t)
	b, _ := image.Encode(tree)
	for name, mut := range map[string]func(*image.Tree){
		"xfeatures": func(t *image.Tree) { t.CPU.XFeatures |= 1 << 62 },
		"xsize": func(t *image.Tree) {
			t.CPU.XStateSize += 64
			for _, th := range t.Processes[0].Threads {
				th.XSave = append(th.XSave, make([]byte, 64)...)
			}
		},
		"vdso": func(t *image.Tree) { t.Processes[0].Vdso.Hash = "00" },
	} {
		tr, _ := image.Decode(b)
		mut(tr)
		_, err := restore.Restore(context.Background(), tr, pages, restore.Options{})
		if !errors.Is(err, restore.ErrMismatch) {
			t.Errorf("%s: got %v, want ErrMismatch", name, err)
		}
	}
}

// failingReader fails on the first page read.
type failingReader struct{ *proctest.Pages }

func (failingReader) ReadPages(pid int, addr uint64, b []byte) error {
	return errors.New("storage is broken")
}

// TestRestoreFailsCleanly makes restore fail half way (pages unreadable) and
// checks the error and that no process of the image is left behind.
func TestRestoreFailsCleanly(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "tree", false)
	p := proctest.Start(t, bin, t.TempDir())
	p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	_ = dump.Kill(tree)
	p.KillAndReap(t)
	for _, ip := range tree.Processes {
		proctest.WaitGone(t, ip.PID)
	}
	_, err = restore.Restore(context.Background(), tree, failingReader{pages}, restore.Options{})
	if err == nil || !strings.Contains(err.Error(), "storage is broken") {
		t.Fatalf("got %v", err)
	}
	for _, ip := range tree.Processes {
		proctest.WaitGone(t, ip.PID)
	}
}
