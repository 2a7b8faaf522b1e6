package restore_test

import (
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
)

// TestEventFDs restores eventfds, timerfds, a signalfd, an epoll interest
// list, inotify watches and file locks (testdata/cprog/eventfds.c).
func TestEventFDs(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "eventfds", static)
			rs, ready := cycle(t, bin, t.TempDir())
			kinds := map[string]int{}
			locks := map[string]int{}
			for _, fd := range rs.tree.Processes[0].FDs {
				kinds[fd.Kind]++
				if fd.Kind == image.FDInotify && (len(fd.Inotify) != 1 || fd.Inotify[0].WD != 2) {
					t.Errorf("inotify watches %+v, want one with wd 2", fd.Inotify)
				}
				for _, l := range fd.Locks {
					locks[l.Kind]++
				}
			}
			want := map[string]int{image.FDEventfd: 2, image.FDTimerfd: 3, image.FDSignalfd: 1, image.FDEpoll: 1, image.FDInotify: 1}
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("image has %d %s fds, want %d", kinds[k], k, n)
				}
			}
			if locks[image.LockFlock] != 1 || locks[image.LockPOSIX] != 1 || locks[image.LockOFD] != 1 {
				t.Errorf("image has locks %v, want one of each kind", locks)
			}
			rs.expectPass(t, ready)
		})
	}
}
