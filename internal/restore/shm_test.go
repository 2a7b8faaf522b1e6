package restore_test

import (
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

// TestSharedMemory restores memory shared by a parent and its child:
// MAP_SHARED anonymous memory, a memfd, System V segments (one removed
// while attached), POSIX shm (testdata/cprog/shm.c).
func TestSharedMemory(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "shm", static)
			rs, ready := cycle(t, bin)
			kinds := map[string]int{}
			for _, s := range rs.tree.Shm {
				kinds[s.Kind]++
			}
			if len(rs.tree.Processes) != 2 || kinds[image.ShmAnon] != 1 || kinds[image.ShmMemfd] != 1 || kinds[image.ShmSysV] != 2 {
				t.Errorf("image has %d processes and shared memory %v; want 2 and 1 anon, 1 memfd, 2 sysv", len(rs.tree.Processes), kinds)
			}
			rs.expectPass(t, ready)
		})
	}
}
