package dump_test

import (
	"bytes"
	"context"
	"errors"
	"os"
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
