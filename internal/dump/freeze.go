package dump

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

const pfKthread = 0x00200000

func readStat(pid int) (procfs.Stat, error) {
	b, err := procfs.Read(pid, "stat")
	if err != nil {
		if os.IsNotExist(err) {
			return procfs.Stat{}, fmt.Errorf("process %d: %w", pid, ErrNotFound)
		}
		return procfs.Stat{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return procfs.ParseStat(b)
}

// checkTarget refuses what can never be dumped.
func checkTarget(pid int, pidNS bool) error {
	if pid <= 0 {
		return fmt.Errorf("process %d: %w", pid, ErrNotFound)
	}
	st, err := readStat(pid)
	if err != nil {
		return err
	}
	if st.PID != pid {
		// A thread id that is not a process id is listed by /proc too.
		return fmt.Errorf("%d is a thread of process %d, not a process: %w", pid, st.PID, ErrUnsupported)
	}
	if st.Flags&pfKthread != 0 {
		return fmt.Errorf("process %d (%s) is a kernel thread: %w", pid, st.Comm, ErrUnsupported)
	}
	if st.State == 'Z' {
		return fmt.Errorf("process %d (%s) is a zombie: %w", pid, st.Comm, ErrUnsupported)
	}
	for p := os.Getpid(); p > 1; {
		if p == pid {
			return fmt.Errorf("process %d is the dumper or one of its ancestors: %w", pid, ErrUnsupported)
		}
		s, err := readStat(p)
		if err != nil {
			break
		}
		p = s.PPID
	}
	if pidNS {
		return checkContainerRoot(pid)
	}
	for _, ns := range []string{"pid", "mnt"} {
		mine, err1 := os.Readlink(fmt.Sprintf("/proc/self/ns/%s", ns))
		theirs, err2 := os.Readlink(procfs.Path(pid, "ns/"+ns))
		if err1 == nil && err2 == nil && mine != theirs {
			return fmt.Errorf("process %d is in another %s namespace: %w", pid, ns, ErrUnsupported)
		}
	}
	return nil
}

// freezeTree seizes every thread of pid and, once a process is stopped (so
// it cannot fork any more), its children, depth first.
func (h *Handle) freezeTree(ctx context.Context, root int) error {
	queue := []int{root}
	seen := map[int]bool{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		st, err := readStat(pid)
		if errors.Is(err, ErrNotFound) && pid != root {
			continue // a child reaped since its parent was listed
		}
		if err != nil {
			return fmt.Errorf("process %d exited during dump: %w", pid, err)
		}
		p := &proc{pid: pid}
		h.procs = append(h.procs, p)
		if st.State == 'Z' {
			p.zombie = true
			continue
		}
		p.stopped = st.State == 'T'

		if err := h.tr.Do(func() error { return freezeProcess(p, h.opts.FreezeTimeout) }); err != nil {
			if pid == root || len(p.threads) > 0 || !gone(pid) {
				return err
			}
			// It was exiting as the freeze reached it (a shell's command
			// substitutions fork and exit all the time): it becomes a
			// zombie of its frozen parent, or is reaped by the kernel.
			zombie, serr := settleExit(pid)
			if serr != nil {
				return fmt.Errorf("%w (%v)", err, serr)
			}
			if zombie {
				p.zombie = true
			} else {
				h.procs = h.procs[:len(h.procs)-1]
			}
			continue
		}
		kids, err := procfs.Children(pid)
		if err != nil {
			return fmt.Errorf("listing children of %d: %w", pid, err)
		}
		queue = append(queue, kids...)
	}
	return nil
}

// freezeProcess runs on the tracer thread.
func freezeProcess(p *proc, limit time.Duration) error {
	have := map[int]bool{}
	for round := 0; ; round++ {
		tids, err := procfs.Tasks(p.pid)
		if err != nil {
			return fmt.Errorf("process %d exited during dump: %w", p.pid, err)
		}
		added := false
		for _, tid := range tids {
			if have[tid] {
				continue
			}
			added = true
			t, err := freezeThread(p.pid, tid, limit)
			if err == unix.ESRCH && tid != p.pid {
				continue // the thread exited before we got it
			}
			if err != nil {
				if gone(p.pid) {
					return fmt.Errorf("process %d exited during dump", p.pid)
				}
				if errors.Is(err, ptrace.ErrNoStop) {
					wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/wchan", p.pid, tid))
					return fmt.Errorf("thread %d of process %d did not stop within %v: it is in an uninterruptible wait (in %s), as on a hung NFS server or in a vfork parent; the tree runs on", tid, p.pid, limit, wchan)
				}
				if err == unix.EPERM {
					return fmt.Errorf("freezing thread %d of process %d: %w (is it already traced by a debugger?)", tid, p.pid, err)
				}
				return fmt.Errorf("freezing thread %d of process %d: %w", tid, p.pid, err)
			}
			have[tid] = true
			p.threads = append(p.threads, t)
		}
		if !added {
			break
		}
		if round > 1000 {
			return fmt.Errorf("process %d keeps creating threads", p.pid)
		}
	}
	// The leader first.
	for i, t := range p.threads {
		if t.tid == p.pid && i != 0 {
			p.threads[0], p.threads[i] = p.threads[i], p.threads[0]
		}
	}
	if len(p.threads) == 0 || p.threads[0].tid != p.pid {
		return fmt.Errorf("process %d: leader thread has exited (only other threads run): %w", p.pid, ErrUnsupported)
	}
	return nil
}

// freezeThread seizes and stops thread tid of pid. A thread in an
// uninterruptible wait is given limit to stop (default 10 s).
func freezeThread(pid, tid int, limit time.Duration) (*thread, error) {
	if limit <= 0 {
		limit = 10 * time.Second
	}
	if err := ptrace.Seize(tid, ptrace.OptsDump); err != nil {
		return nil, err
	}
	if err := ptrace.Interrupt(tid); err != nil {
		_ = ptrace.Detach(tid, 0)
		return nil, err
	}
	t := &thread{tid: tid}
	for {
		var ws unix.WaitStatus
		var err error
		if procfs.TaskState(pid, tid) == 'D' {
			ws, err = ptrace.WaitLimit(tid, limit)
		} else {
			ws, err = ptrace.Wait(tid)
		}
		if err != nil {
			return nil, err
		}
		if ws.Exited() || ws.Signaled() {
			return nil, unix.ESRCH
		}
		if !ws.Stopped() {
			continue
		}
		if ptrace.Event(ws) == unix.PTRACE_EVENT_STOP {
			break
		}
		if ptrace.Event(ws) != 0 {
			_ = ptrace.Cont(tid, 0)
			continue
		}
		// A signal was being delivered: set it aside, re-send on resume,
		// and let the pending interrupt stop the thread.
		t.stashed = append(t.stashed, int(ws.StopSignal()))
		if err := ptrace.Cont(tid, 0); err != nil {
			return nil, err
		}
	}
	if err := suspendSeccomp(pid, tid); err != nil {
		return nil, err
	}
	var err error
	if t.regs, err = ptrace.GetRegs(tid); err != nil {
		return nil, err
	}
	if t.mask, err = ptrace.GetSigmask(tid); err != nil {
		return nil, err
	}
	// Keep every signal pending while we inject system calls; the saved
	// mask is what goes into the image and back on resume.
	if err := ptrace.SetSigmask(tid, ^uint64(0)); err != nil {
		return nil, err
	}
	return t, nil
}

// settleExit waits until process pid, which is exiting, has exited, and
// says whether it is a zombie now (false: it was reaped).
func settleExit(pid int) (zombie bool, err error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	for {
		// A pidfd is readable once the whole process has exited.
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 5000)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll on its pidfd: %w", err)
		}
		if n == 0 {
			return false, errors.New("still exiting after 5 s")
		}
		break
	}
	st, err := readStat(pid)
	return err == nil && st.State == 'Z', nil
}

// gone reports whether pid has exited (vanished or a zombie).
func gone(pid int) bool {
	st, err := readStat(pid)
	return err != nil || st.State == 'Z' || st.State == 'X'
}
