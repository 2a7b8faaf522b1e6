package dump_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

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
