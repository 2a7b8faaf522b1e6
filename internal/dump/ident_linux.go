package dump

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// taskStatus parses /proc/PID/task/TID/status.
func taskStatus(pid, tid int) (procfs.Status, error) {
	b, err := procfs.Read(pid, fmt.Sprintf("task/%d/status", tid))
	if err != nil {
		return procfs.Status{}, err
	}
	st, err := procfs.ParseStatus(b)
	if err != nil {
		return st, fmt.Errorf("thread %d: %w", tid, err)
	}
	return st, nil
}

// suspendSeccomp sets PTRACE_O_SUSPEND_SECCOMP on a stopped thread, so
// its seccomp filters (if any) do not judge the system calls the dump
// injects: they would be refused, or kill it. The kernel clears the option
// at detach. Setting it costs one ptrace call, less than reading the
// thread's status first; only when it is refused (no CAP_SYS_ADMIN) does
// the status say whether that matters.
func suspendSeccomp(pid, tid int) error {
	err := ptrace.SetOptions(tid, ptrace.OptsDump|ptrace.OptSuspendSeccomp)
	if err == nil {
		return nil
	}
	if st, serr := taskStatus(pid, tid); serr == nil && st.Seccomp != 0 {
		return fmt.Errorf("thread %d has seccomp mode %d, whose filters cannot be suspended for the dump (needs CAP_SYS_ADMIN): %w", tid, st.Seccomp, err)
	}
	return nil
}

// threadIdentity reads what the kernel keeps per thread about scheduling and
// privilege: sched_getattr, the affinity mask, the capability sets,
// no_new_privs and the seccomp filters. It runs on the tracer thread
// (PTRACE_SECCOMP_GET_FILTER).
func threadIdentity(pid, tid int, th *image.Thread) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return fmt.Errorf("thread %d: sched_getattr: %w", tid, err)
	}
	s := &image.Sched{Policy: attr.Policy, Flags: attr.Flags, Nice: attr.Nice, Priority: attr.Priority,
		Runtime: attr.Runtime, Deadline: attr.Deadline, Period: attr.Period}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &set); err != nil {
		return fmt.Errorf("thread %d: sched_getaffinity: %w", tid, err)
	}
	n := len(set)
	for n > 0 && set[n-1] == 0 {
		n--
	}
	for _, w := range set[:n] {
		s.Affinity = append(s.Affinity, uint64(w))
	}
	th.Sched = s
	st, err := taskStatus(pid, tid)
	if err != nil {
		return err
	}
	sec := &image.Security{CapInh: st.CapInh, CapPrm: st.CapPrm, CapEff: st.CapEff, CapBnd: st.CapBnd,
		CapAmb: st.CapAmb, NoNewPrivs: st.NoNewPriv != 0, SeccompMode: st.Seccomp}
	if st.Seccomp == 2 {
		fs, err := ptrace.SeccompFilters(tid)
		if err != nil {
			return fmt.Errorf("thread %d: reading seccomp filters (PTRACE_SECCOMP_GET_FILTER): %w", tid, err)
		}
		for _, f := range fs {
			sec.Seccomp = append(sec.Seccomp, image.SeccompFilter{Flags: f.Flags, Prog: f.Prog})
		}
	}
	th.Security = sec
	if b, err := procfs.Read(pid, fmt.Sprintf("task/%d/personality", tid)); err == nil {
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 32)
		if err != nil {
			return fmt.Errorf("thread %d: personality %q: %w", tid, b, err)
		}
		pers := uint32(v)
		th.Personality = &pers
	}
	return nil
}

const prGetSecurebits = 27

// injectSecurebits reads the thread's securebits (no /proc file shows them).
func injectSecurebits(in *ptrace.Injector, th *image.Thread) error {
	v, err := in.Syscall(unix.SYS_PRCTL, prGetSecurebits)
	if err != nil {
		return fmt.Errorf("thread %d: PR_GET_SECUREBITS: %w", in.TID, err)
	}
	if th.Security != nil {
		th.Security.Securebits = uint32(v)
	}
	return nil
}

// parseTimers parses /proc/PID/timers: blocks of "ID:", "signal:",
// "notify:" and "ClockID:" lines.
func parseTimers(b []byte) ([]image.PosixTimer, error) {
	var out []image.PosixTimer
	var cur *image.PosixTimer
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		bad := func(err error) error { return fmt.Errorf("timers line %d %q: %v", n, sc.Text(), err) }
		switch k {
		case "ID":
			id, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad(err)
			}
			out = append(out, image.PosixTimer{ID: id})
			cur = &out[len(out)-1]
		case "signal":
			if cur == nil {
				return nil, bad(fmt.Errorf("no ID line before"))
			}
			sig, val, _ := strings.Cut(v, "/")
			var err error
			if cur.Signo, err = strconv.Atoi(sig); err != nil {
				return nil, bad(err)
			}
			if cur.Value, err = strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64); err != nil {
				return nil, bad(err)
			}
		case "notify":
			if cur == nil {
				return nil, bad(fmt.Errorf("no ID line before"))
			}
			// "signal/pid.N", "none/pid.N", "thread/tid.N" or "signal/tid.N".
			how, who, _ := strings.Cut(v, "/")
			switch how {
			case "signal", "thread":
				cur.Notify = image.SigevSignal
			case "none":
				cur.Notify = image.SigevNone
			default:
				return nil, bad(fmt.Errorf("unknown notification %q", how))
			}
			if rest, ok := strings.CutPrefix(who, "tid."); ok {
				tid, err := strconv.Atoi(rest)
				if err != nil {
					return nil, bad(err)
				}
				cur.Notify |= image.SigevThreadID
				cur.TID = tid
			}
		case "ClockID":
			if cur == nil {
				return nil, bad(fmt.Errorf("no ID line before"))
			}
			c, err := strconv.Atoi(v)
			if err != nil {
				return nil, bad(err)
			}
			cur.Clock = c
		}
	}
	return out, nil
}

// injectTimers reads each POSIX timer's time left, interval and overrun
// count in the stopped process.
func injectTimers(in *ptrace.Injector, ip *image.Process, mem *ptrace.Mem, scratch uint64) error {
	buf := make([]byte, 32)
	for i := range ip.Timers {
		t := &ip.Timers[i]
		if _, err := in.Syscall(unix.SYS_TIMER_GETTIME, uint64(t.ID), scratch); err != nil {
			return fmt.Errorf("process %d: timer_gettime(%d): %w", ip.PID, t.ID, err)
		}
		if err := mem.Read(scratch, buf); err != nil {
			return err
		}
		t.IntervalNs = int64(le(buf, 0))*1e9 + int64(le(buf, 8))
		t.ValueNs = int64(le(buf, 16))*1e9 + int64(le(buf, 24))
		ov, err := in.Syscall(unix.SYS_TIMER_GETOVERRUN, uint64(t.ID))
		if err != nil {
			return fmt.Errorf("process %d: timer_getoverrun(%d): %w", ip.PID, t.ID, err)
		}
		t.Overrun = int(int32(ov))
	}
	return nil
}
