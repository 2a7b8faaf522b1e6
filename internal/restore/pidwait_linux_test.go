package restore

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
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
