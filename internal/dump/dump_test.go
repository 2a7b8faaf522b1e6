package dump_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

func TestDumpResume(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		bin := proctest.Build(t, "basic", static)
		p := proctest.Start(t, bin, t.TempDir())
		p.Lines.Expect(t, "READY")
		pages := proctest.NewPages()
		tree, err := dump.Dump(context.Background(), p.PID, dump.Options{LeaveRunning: true}, pages)
		if err != nil {
			t.Fatal(err)
		}
		if s := proctest.State(p.PID); s != 't' {
			t.Errorf("after dump the process is in state %q, want t (traced, frozen)", s)
		}
		var text bytes.Buffer
		if err := image.WriteText(&text, tree); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"SIGUSR1", "[heap]", "basic-data", "/dev/null"} {
			if !strings.Contains(text.String(), want) {
				t.Errorf("inspect text lacks %q:\n%s", want, text.String())
			}
		}
		if testing.Verbose() {
			t.Log(text.String())
		}
		if err := dump.Finish(tree); err != nil {
			t.Fatal(err)
		}
		if err := dump.Finish(tree); err == nil {
			t.Error("second Finish succeeded")
		}
		if err := syscall.Kill(p.PID, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		p.Lines.Expect(t, "PASS")
	}
}

func TestDumpBadTargets(t *testing.T) {
	proctest.RequireRoot(t)
	ctx := context.Background()
	_, err := dump.Dump(ctx, 1<<22+7, dump.Options{}, proctest.NewPages())
	if !errors.Is(err, dump.ErrNotFound) || !strings.Contains(err.Error(), "4194311") {
		t.Errorf("missing pid: %v", err)
	}
	_, err = dump.Dump(ctx, 2, dump.Options{}, proctest.NewPages())
	if !errors.Is(err, dump.ErrUnsupported) || !strings.Contains(err.Error(), "kernel thread") {
		t.Errorf("kthreadd: %v", err)
	}
	_, err = dump.Dump(ctx, os.Getpid(), dump.Options{}, proctest.NewPages())
	if !errors.Is(err, dump.ErrUnsupported) {
		t.Errorf("self: %v", err)
	}
}

// TestDumpForkChurn dumps a shell that forks a short-lived child all the
// time: a child that exits while the freeze reaches it is saved as a
// zombie of its frozen parent (or left out once reaped), never failing the
// dump.
func TestDumpForkChurn(t *testing.T) {
	proctest.RequireRoot(t)
	sh := exec.Command("/bin/sh", "-c", "while :; do x=$(/bin/true); done")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	zombies := 0
	for i := 0; i < 40; i++ {
		tree, err := dump.Dump(context.Background(), sh.Process.Pid, dump.Options{LeaveRunning: true}, proctest.NewPages())
		if err != nil {
			t.Fatalf("dump %d of a forking shell: %v", i+1, err)
		}
		for _, p := range tree.Processes {
			if p.Zombie {
				zombies++
			}
		}
		if err := dump.Finish(tree); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("40 dumps, %d zombies caught", zombies)
}

// TestFreezeTimeout dumps a process that cannot stop: it waits,
// uninterruptibly, for a vfork child. The dump gives up after
// Options.FreezeTimeout, says why, and leaves the process running: once
// the child is killed it goes on and passes.
func TestFreezeTimeout(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "vforkwait", false)
	p := proctest.Start(t, bin)
	p.Lines.Expect(t, "READY")
	// The vfork comes right after READY; the wait for the child is state D.
	for i := 0; proctest.State(p.PID) != 'D'; i++ {
		if i == 5000 {
			t.Fatalf("process %d never waits for its vfork child (state %c)", p.PID, proctest.State(p.PID))
		}
		time.Sleep(time.Millisecond)
	}
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID, p.PID))
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(kids)))
	if err != nil {
		t.Fatalf("vfork child: %q", kids)
	}
	t0 := time.Now()
	_, err = dump.Dump(context.Background(), p.PID, dump.Options{FreezeTimeout: 300 * time.Millisecond}, proctest.NewPages())
	if err == nil || !strings.Contains(err.Error(), "did not stop within 300ms") || !strings.Contains(err.Error(), "uninterruptible") {
		t.Fatalf("dump of a process in state D: %v; want it to give up after 300ms and say why", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("the dump gave up after %v", d)
	}
	t.Log(err)
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.Lines.Expect(t, "PASS")
}
