package restore_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/sysvipc"
)

// TestSysVIPC restores System V semaphore sets and message queues
// (testdata/cprog/sysvipc.c): once with the objects still there (the
// SEM_UNDO adjustment the kernel made when the dumped process died is
// undone), once with them removed before the restore, as on another
// machine (recreated with the same ids, keys, modes, values and messages).
// A child blocked in semop and then msgrcv is woken by the restored parent.
func TestSysVIPC(t *testing.T) {
	proctest.RequireRoot(t)
	for _, removed := range []bool{false, true} {
		t.Run(map[bool]string{false: "kept", true: "removed"}[removed], func(t *testing.T) {
			bin := proctest.Build(t, "sysvipc", false)
			key := fmt.Sprintf("%#x", 0x4b000000|rand.IntN(1<<24))
			var saved *image.Tree
			beforeRestore = func(t *testing.T, tree *image.Tree) {
				saved = tree
				if !removed {
					return
				}
				for _, s := range tree.Sem {
					if err := sysvipc.SemRemove(s.ID); err != nil {
						t.Fatal(err)
					}
				}
				for _, q := range tree.Msg {
					if err := sysvipc.MsgRemove(q.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer func() { beforeRestore = nil }()
			rs, ready := cycle(t, bin, key)
			defer func() {
				if t.Failed() {
					t.Log(rs.lines.All())
				}
			}()
			t.Cleanup(func() {
				for _, s := range saved.Sem {
					_ = sysvipc.SemRemove(s.ID)
				}
				for _, q := range saved.Msg {
					_ = sysvipc.MsgRemove(q.ID)
				}
			})
			if len(saved.Sem) != 2 || len(saved.Msg) != 1 {
				t.Fatalf("image has %d semaphore sets and %d queues, want 2 and 1", len(saved.Sem), len(saved.Msg))
			}
			if q := saved.Msg[0]; len(q.Messages) != 3 || q.Messages[2].Type != 4 || len(q.Messages[2].Data) != 4000 {
				t.Errorf("queue saved as %d messages", len(q.Messages))
			}
			reset := false
			for _, w := range rs.res.Warnings {
				reset = reset || strings.Contains(w, "reset to the dumped [4 0 2]")
			}
			if reset == removed {
				t.Errorf("warnings %q: want a SEM_UNDO reset warning only when the set was kept", rs.res.Warnings)
			}
			rs.expectPass(t, ready)
		})
	}
}
