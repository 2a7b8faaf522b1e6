package restore_test

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/restore"
)

// TestBigMemory dumps and restores a process with CKPT_BIGMEM_MIB (default
// 256) MiB of heap and logs the times (in-memory page store).
func TestBigMemory(t *testing.T) {
	proctest.RequireRoot(t)
	mib := os.Getenv("CKPT_BIGMEM_MIB")
	if mib == "" {
		mib = "256"
	}
	if testing.Short() {
		mib = "16"
	}
	bin := proctest.Build(t, "bigmem", false)
	p := proctest.Start(t, bin, mib)
	ready := p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	t0 := time.Now()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	dumpTime := time.Since(t0)
	_ = dump.Kill(tree)
	p.KillAndReap(t)
	sr, sw, _ := os.Pipe()
	t1 := time.Now()
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{Stdout: sw, Stderr: sw})
	restoreTime := time.Since(t1)
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() }()
	t.Logf("%s MiB heap: image %d MiB, dump %v, restore %v", mib, pages.Bytes()>>20, dumpTime, restoreTime)
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Errorf("got %q", got)
	}
}
