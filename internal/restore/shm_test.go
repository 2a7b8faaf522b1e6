package restore_test

import (
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

// TestSharedMemory restores memory shared by a parent and its child:
// MAP_SHARED anonymous memory, a memfd, System V segments (one removed
// while attached), POSIX shm, and a POSIX shm object unlinked while mapped
// and open (testdata/cprog/shm.c).
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
			if len(rs.tree.Processes) != 2 || kinds[image.ShmAnon] != 1 || kinds[image.ShmMemfd] != 1 || kinds[image.ShmSysV] != 2 || kinds[image.ShmDeleted] != 1 {
				t.Errorf("image has %d processes and shared memory %v; want 2 and 1 anon, 1 memfd, 2 sysv, 1 deleted", len(rs.tree.Processes), kinds)
			}
			memfds := 0
			for _, p := range rs.tree.Processes {
				for _, fd := range p.FDs {
					if fd.Kind == image.FDMemfd {
						memfds++
					}
				}
			}
			if memfds != 4 { // the memfd and the unlinked object's fd, in each process
				t.Errorf("image has %d memfd descriptors, want 4", memfds)
			}
			rs.expectPass(t, ready)
		})
	}
}
