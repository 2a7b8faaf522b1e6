package restore_test

import (
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
	"golang.org/x/sys/unix"
)

// TestIdentity restores POSIX timers (explicit ids with gaps, a signal
// value, SIGEV_NONE, a thread target, a periodic timer whose signal is
// pending), nice and scheduling policies, CPU affinity, personality,
// uids/gids/groups, capability sets (ambient, bounding), securebits,
// no_new_privs and seccomp filters, per thread (testdata/cprog/ident.c:
// each thread compares its own view before and after).
func TestIdentity(t *testing.T) {
	proctest.RequireRoot(t)
	for _, static := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "static"}[static], func(t *testing.T) {
			bin := proctest.Build(t, "ident", static)
			rs, ready := cycle(t, bin)
			defer func() {
				if t.Failed() {
					for _, l := range rs.lines.All() {
						t.Log(l)
					}
				}
			}()
			p := rs.tree.Processes[0]
			if len(p.Timers) != 4 {
				t.Errorf("image has %d POSIX timers, want 4: %+v", len(p.Timers), p.Timers)
			}
			var thread, none, periodic bool
			for _, tm := range p.Timers {
				thread = thread || tm.Notify == image.SigevThreadID && tm.TID == p.Threads[1].TID
				none = none || tm.Notify == image.SigevNone && tm.ValueNs > 1900e9
				periodic = periodic || tm.IntervalNs == 20e6 && tm.Value == 99
			}
			if !thread || !none || !periodic {
				t.Errorf("timers saved as %+v", p.Timers)
			}
			main := p.Threads[0]
			if main.Security == nil || len(main.Security.Seccomp) != 2 || !main.Security.NoNewPrivs ||
				main.Security.CapAmb != 1<<unix.CAP_NET_BIND_SERVICE || main.Security.CapBnd&(1<<unix.CAP_SYS_MODULE) != 0 {
				t.Errorf("main thread security saved as %+v", main.Security)
			}
			if main.Sched == nil || main.Sched.Policy != unix.SCHED_BATCH || main.Sched.Nice != 7 {
				t.Errorf("main thread scheduling saved as %+v", main.Sched)
			}
			if w := p.Threads[1].Sched; w == nil || w.Policy != unix.SCHED_RR || w.Priority != 3 {
				t.Errorf("worker scheduling saved as %+v", w)
			}
			if p.Creds.UID != [4]int{1004, 1005, 1006, 1005} {
				t.Errorf("uids saved as %v", p.Creds.UID)
			}
			rs.expectPass(t, ready)
		})
	}
}
