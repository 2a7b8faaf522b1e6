package restore

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/proctest"
)

// TestWaitPIDsFreeGroup: a PID whose process is gone stays taken while it
// is another task's process group (clone3 with set_tid would fail with
// EEXIST): refused while a member lives, waited for while the last member
// is a zombie, free once that is reaped.
func TestWaitPIDsFreeGroup(t *testing.T) {
	// sh leads a process group, leaves a sleep in it and exits.
	cmd := exec.Command("/bin/sh", "-c", "sleep 100 >/dev/null 2>&1 & echo $!")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	leader := cmd.Process.Pid
	member, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(member, syscall.SIGKILL)
	b, err := procfs.Read(member, "stat")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := procfs.ParseStat(b); err != nil || st.PGID != leader {
		t.Fatalf("sleep %d is not in group %d: %+v %v", member, leader, st, err)
	}
	tree := &image.Tree{Processes: []*image.Process{{PID: leader}}}
	ctx := context.Background()
	err = waitPIDsFree(ctx, tree, time.Second)
	if !errors.Is(err, ErrPIDInUse) || !strings.Contains(err.Error(), "process group") {
		t.Fatalf("PID %d, the group of live process %d: %v", leader, member, err)
	}
	// Killed, the member is a zombie until init reaps it: waited for.
	if err := syscall.Kill(member, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitPIDsFree(ctx, tree, 30*time.Second); err != nil {
		t.Fatalf("after the group's last member died: %v", err)
	}
	if _, err := procfs.Read(member, "stat"); err == nil {
		t.Errorf("waitPIDsFree returned while the group's member %d still exists", member)
	}
}

// TestKillLeftovers: a child that left its parent's process group
// (setsid) outlives the killed root; Options.KillLeftovers kills that very
// process (same start time) so the restore gets its PID, and without it
// the restore refuses.
func TestKillLeftovers(t *testing.T) {
	proctest.RequireRoot(t)
	sh := exec.Command("/bin/sh", "-c", "setsid /bin/sleep 1000 & echo $!; exec /bin/sleep 1000")
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sh.Process.Kill(); _ = sh.Wait() }()
	var child int
	if _, err := fmt.Fscan(out, &child); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(child, syscall.SIGKILL)
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), sh.Process.Pid, dump.Options{LeaveRunning: true}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Finish(tree); err != nil {
		t.Fatal(err)
	}
	if len(tree.Processes) != 2 || tree.Processes[1].PID != child || tree.Processes[1].StartTime == 0 || tree.BootID == "" {
		t.Fatalf("image: %d processes, boot %q; want the root and its child %d with start times", len(tree.Processes), tree.BootID, child)
	}
	// The root dies; its setsid child runs on.
	_ = sh.Process.Kill()
	_ = sh.Wait()
	if _, err := Restore(context.Background(), tree, pages, Options{PIDWait: 100 * time.Millisecond}); !errors.Is(err, ErrPIDInUse) {
		t.Fatalf("restore over the surviving child: %v, want ErrPIDInUse", err)
	}
	res, err := Restore(context.Background(), tree, pages, Options{KillLeftovers: true})
	if err != nil {
		t.Fatalf("restore with KillLeftovers: %v", err)
	}
	defer func() {
		for _, pid := range res.PIDs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_, _ = res.Wait()
	}()
	b, err := procfs.Read(child, "stat")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := procfs.ParseStat(b); err != nil || st.StartTime == tree.Processes[1].StartTime {
		t.Errorf("PID %d is still the old child (start time %d), not the restored one", child, st.StartTime)
	}
}
