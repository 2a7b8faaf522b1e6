package proccr_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/repo"
)

// Container dumps that cannot work fail with a message saying why, leave
// the program running and unfrozen, and commit nothing.
func TestContainerDumpRefused(t *testing.T) {
	proctest.RequireRoot(t)
	if _, err := container.Cgroup2Root(); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx := context.Background()
	r, err := repo.Init(ctx, backend.NewMem(), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cg, err := container.CgroupFor(fmt.Sprintf("proccr-test-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.Create(time.Second); err != nil {
		t.Fatal(err)
	}
	fd, err := cg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	out := filepath.Join(t.TempDir(), "count")
	// A plain process (not PID 1 of a PID namespace), born in the group.
	cmd := exec.Command("/bin/sh", "-c", `i=0; while :; do i=$((i+1)); echo $i > `+out+`; done`)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cg.Kill()
		cmd.Wait()
		cg.Create(5 * time.Second) // waits until empty
		cg.Remove()
	}()
	running := func() {
		t.Helper()
		b, _ := os.ReadFile(filepath.Join(cg.Dir, "cgroup.events"))
		if !strings.Contains(string(b), "frozen 0") {
			t.Fatalf("the group was left frozen:\n%s", b)
		}
		if s := proctest.State(cmd.Process.Pid); s == 't' || s == 'T' {
			t.Fatalf("process left stopped (%c)", s)
		}
		a, _ := os.ReadFile(out)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if b, _ := os.ReadFile(out); string(b) != string(a) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the program does not run after the refused dump")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, tc := range []struct {
		cg   *container.Cgroup
		want string
	}{
		{&container.Cgroup{Dir: t.TempDir()}, "cannot be frozen"},
		{cg, "not PID 1 of its own PID namespace"},
	} {
		for _, leave := range []bool{false, true} {
			_, err := proccr.Dump(ctx, r, cmd.Process.Pid, proccr.DumpOptions{Name: "c", Container: tc.cg, LeaveRunning: leave})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("dump with cgroup %s: %v, want an error saying %q", tc.cg.Dir, err, tc.want)
			}
			running()
		}
	}
	if ms, _, err := r.List(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("refused dumps left %d checkpoints (%v)", len(ms), err)
	}
}
