package restore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

const (
	prSetNoNewPrivs          = 38
	prSetSeccomp             = 22
	prSetSecurebits          = 28
	prCapbsetDrop            = 24
	prCapAmbient             = 47
	prCapAmbientRaise        = 2
	prTimerCreateRestoreIDs  = 77
	seccompSetModeFilter     = 1
	secbitNoSetuidFixup      = 1 << 2
	capSetpcap               = 8
	linuxCapabilityVersion3  = 0x20080522
	offTimerID               = offStruct + 0x100
	offTimerSpec             = offStruct + 0x140
	sigeventSize             = 64
	maxCapability            = 63
	schedFlagsRestorable     = 0x7 // RESET_ON_FORK, RECLAIM, DL_OVERRUN
	timerCreateRestoreIDsOn  = 1
	timerCreateRestoreIDsOff = 0
)

// restoreTimers creates the process's POSIX timers with their saved ids
// (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15+), signal, value and target
// thread, and arms them with the time that was left. It runs once every
// thread exists (a timer may signal one thread).
func (r *restorer) restoreTimers(p *rproc) error {
	img := p.img
	if len(img.Timers) == 0 {
		return nil
	}
	in := p.in
	if _, err := in.Syscall(unix.SYS_PRCTL, prTimerCreateRestoreIDs, timerCreateRestoreIDsOn); err != nil {
		return fmt.Errorf("PR_TIMER_CREATE_RESTORE_IDS (needs Linux 6.15+) for %d POSIX timers: %w", len(img.Timers), err)
	}
	// /proc/PID/timers lists the newest first, and so does the image:
	// create them oldest first so the kernel's list has the same order.
	for i := len(img.Timers) - 1; i >= 0; i-- {
		t := img.Timers[i]
		ev := make([]byte, sigeventSize)
		binary.LittleEndian.PutUint64(ev, t.Value)
		binary.LittleEndian.PutUint32(ev[8:], uint32(t.Signo))
		binary.LittleEndian.PutUint32(ev[12:], uint32(t.Notify))
		binary.LittleEndian.PutUint32(ev[16:], uint32(t.TID))
		if err := p.mem.Write(r.scratch+offStruct, ev); err != nil {
			return err
		}
		var id [4]byte
		binary.LittleEndian.PutUint32(id[:], uint32(t.ID))
		if err := p.mem.Write(r.scratch+offTimerID, id[:]); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_TIMER_CREATE, uint64(t.Clock), r.scratch+offStruct, r.scratch+offTimerID); err != nil {
			return fmt.Errorf("timer_create of timer %d (clock %d, signal %d): %w", t.ID, t.Clock, t.Signo, err)
		}
		var got [4]byte
		if err := p.mem.Read(r.scratch+offTimerID, got[:]); err != nil {
			return err
		}
		if g := int(int32(binary.LittleEndian.Uint32(got[:]))); g != t.ID {
			return fmt.Errorf("timer_create gave timer id %d, want %d", g, t.ID)
		}
		if t.ValueNs == 0 {
			continue
		}
		var spec []byte
		for _, v := range []int64{t.IntervalNs / 1e9, t.IntervalNs % 1e9, t.ValueNs / 1e9, t.ValueNs % 1e9} {
			spec = binary.LittleEndian.AppendUint64(spec, uint64(v))
		}
		if err := p.mem.Write(r.scratch+offTimerSpec, spec); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_TIMER_SETTIME, uint64(t.ID), 0, r.scratch+offTimerSpec, 0); err != nil {
			return fmt.Errorf("timer_settime of timer %d: %w", t.ID, err)
		}
		if t.Overrun != 0 {
			r.warn("process %d: timer %d had an overrun count of %d, which is not restored", img.PID, t.ID, t.Overrun)
		}
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, prTimerCreateRestoreIDs, timerCreateRestoreIDsOff); err != nil {
		return fmt.Errorf("PR_TIMER_CREATE_RESTORE_IDS off: %w", err)
	}
	return nil
}

// restoreSched gives every thread its scheduling policy, priority, nice
// value and CPU affinity, from the restorer. What this machine refuses (a
// CPU it lacks, a deadline reservation it cannot admit) is a warning.
func (r *restorer) restoreSched(p *rproc) {
	for i, th := range p.img.Threads {
		s := th.Sched
		if s == nil {
			continue
		}
		tid := p.threads[i].TID
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: s.Policy, Flags: s.Flags & schedFlagsRestorable,
			Nice: s.Nice, Priority: s.Priority, Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
			r.warn("thread %d: cannot restore scheduling policy %d priority %d nice %d: %v", tid, s.Policy, s.Priority, s.Nice, err)
		}
		if len(s.Affinity) == 0 {
			continue
		}
		var set unix.CPUSet
		for j, w := range s.Affinity {
			for bit := 0; bit < 64; bit++ {
				if w&(1<<bit) != 0 {
					set.Set(j*64 + bit)
				}
			}
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			r.warn("thread %d: cannot restore CPU affinity %x: %v", tid, s.Affinity, err)
		}
	}
}

// setIdentity restores, per thread and in this order: no_new_privs, the
// seccomp filters (while the thread is still privileged enough to install
// them; PTRACE_O_SUSPEND_SECCOMP keeps them from judging the calls
// injected after), then groups, uids and gids, capabilities, the ambient
// set, the bounding set and securebits. The credentials come last because
// dropping them takes away what the earlier steps need.
func (r *restorer) setIdentity(p *rproc) error {
	img := p.img
	filtered := false
	for _, th := range img.Threads {
		if th.Security != nil && th.Security.SeccompMode != 0 {
			filtered = true
		}
	}
	if filtered {
		for _, in := range p.threads {
			if err := ptrace.SetOptions(in.TID, ptrace.OptsRestore|ptrace.OptSuspendSeccomp); err != nil {
				return fmt.Errorf("thread %d: suspending seccomp while restoring (needs CAP_SYS_ADMIN): %w", in.TID, err)
			}
		}
	}
	var progArea uint64
	var progLen uint64
	for _, th := range img.Threads {
		if th.Security == nil {
			continue
		}
		for _, f := range th.Security.Seccomp {
			progLen = max(progLen, uint64(len(f.Prog)))
		}
	}
	if progLen > 0 {
		progLen = (progLen + 16 + image.PageSize - 1) &^ (image.PageSize - 1)
		a, err := p.in.Syscall(unix.SYS_MMAP, 0, progLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return fmt.Errorf("mapping room for seccomp filters: %w", err)
		}
		progArea = a
	}
	for i, th := range img.Threads {
		in := p.threads[i]
		if th.Personality != nil {
			if _, err := in.Syscall(unix.SYS_PERSONALITY, uint64(*th.Personality)); err != nil {
				return fmt.Errorf("thread %d: personality %#x: %w", in.TID, *th.Personality, err)
			}
		}
		sec := th.Security
		if sec == nil {
			continue
		}
		if sec.NoNewPrivs {
			if _, err := in.Syscall(unix.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0); err != nil {
				return fmt.Errorf("thread %d: PR_SET_NO_NEW_PRIVS: %w", in.TID, err)
			}
		}
		switch sec.SeccompMode {
		case 1:
			if _, err := in.Syscall(unix.SYS_PRCTL, prSetSeccomp, 1); err != nil {
				return fmt.Errorf("thread %d: strict seccomp: %w", in.TID, err)
			}
		case 2:
			for j, f := range sec.Seccomp {
				if len(f.Prog) == 0 || len(f.Prog)%8 != 0 || len(f.Prog)/8 > 4096 {
					return fmt.Errorf("thread %d: seccomp filter %d has %d bytes, not a BPF program", in.TID, j, len(f.Prog))
				}
				hdr := binary.LittleEndian.AppendUint64(nil, uint64(len(f.Prog)/8))
				hdr = binary.LittleEndian.AppendUint64(hdr, progArea+16)
				if err := p.mem.Write(progArea, append(hdr, f.Prog...)); err != nil {
					return err
				}
				if _, err := in.Syscall(unix.SYS_SECCOMP, seccompSetModeFilter, f.Flags, progArea); err != nil {
					return fmt.Errorf("thread %d: installing seccomp filter %d of %d: %w", in.TID, j+1, len(sec.Seccomp), err)
				}
			}
		}
	}
	if progArea != 0 {
		if _, err := p.in.Syscall(unix.SYS_MUNMAP, progArea, progLen); err != nil {
			return err
		}
	}
	for i, th := range img.Threads {
		if err := r.threadCreds(p, p.threads[i], th); err != nil {
			return fmt.Errorf("thread %d: %w", p.threads[i].TID, err)
		}
	}
	return nil
}

// threadCreds sets one thread's ids and capabilities. Securebits'
// SECBIT_NO_SETUID_FIXUP keeps the kernel from clearing capabilities when
// the uids change; CAP_SETPCAP is kept until the bounding set and the
// securebits are done, then the exact sets go in (lowering is always
// allowed).
func (r *restorer) threadCreds(p *rproc, in *ptrace.Injector, th *image.Thread) error {
	c := p.img.Creds
	root := c.UID == [4]int{} && c.GID == [4]int{} && len(c.Groups) == 0
	sec := th.Security
	if sec != nil && root && sec.Securebits == 0 {
		if now, err := currentCaps(p.pid, in.TID); err == nil && now == [5]uint64{sec.CapInh, sec.CapPrm, sec.CapEff, sec.CapBnd, sec.CapAmb} {
			return nil
		}
	} else if sec == nil && root {
		return nil
	}
	if sec != nil {
		if _, err := in.Syscall(unix.SYS_PRCTL, prSetSecurebits, secbitNoSetuidFixup); err != nil {
			return fmt.Errorf("PR_SET_SECUREBITS: %w", err)
		}
	}
	var b []byte
	for _, g := range c.Groups {
		b = binary.LittleEndian.AppendUint32(b, uint32(g))
	}
	if len(b) > 0x1000 {
		return fmt.Errorf("%d supplementary groups", len(c.Groups))
	}
	if err := p.mem.Write(r.scratch+offAuxv, append(b, 0, 0, 0, 0)); err != nil {
		return err
	}
	steps := []struct {
		name string
		nr   int
		args []uint64
	}{
		{"setgroups", unix.SYS_SETGROUPS, []uint64{uint64(len(c.Groups)), r.scratch + offAuxv}},
		{"setresgid", unix.SYS_SETRESGID, []uint64{uint64(c.GID[0]), uint64(c.GID[1]), uint64(c.GID[2])}},
		{"setfsgid", unix.SYS_SETFSGID, []uint64{uint64(c.GID[3])}},
		{"setresuid", unix.SYS_SETRESUID, []uint64{uint64(c.UID[0]), uint64(c.UID[1]), uint64(c.UID[2])}},
		{"setfsuid", unix.SYS_SETFSUID, []uint64{uint64(c.UID[3])}},
	}
	for _, s := range steps {
		if _, err := in.Syscall(s.nr, s.args...); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if sec == nil {
		return nil
	}
	const pcap = 1 << capSetpcap
	if err := r.capset(p, in, sec.CapEff|pcap, sec.CapPrm|pcap, sec.CapInh); err != nil {
		return err
	}
	for cp := 0; cp <= maxCapability; cp++ {
		if sec.CapAmb&(1<<cp) != 0 {
			if _, err := in.Syscall(unix.SYS_PRCTL, prCapAmbient, prCapAmbientRaise, uint64(cp), 0, 0); err != nil {
				return fmt.Errorf("raising ambient capability %d: %w", cp, err)
			}
		}
	}
	for cp := 0; cp <= maxCapability; cp++ {
		if sec.CapBnd&(1<<cp) == 0 {
			if _, err := in.Syscall(unix.SYS_PRCTL, prCapbsetDrop, uint64(cp)); errors.Is(err, unix.EINVAL) {
				break // past this kernel's last capability
			} else if err != nil {
				return fmt.Errorf("dropping capability %d from the bounding set: %w", cp, err)
			}
		}
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, prSetSecurebits, uint64(sec.Securebits)); err != nil {
		return fmt.Errorf("PR_SET_SECUREBITS %#x: %w", sec.Securebits, err)
	}
	return r.capset(p, in, sec.CapEff, sec.CapPrm, sec.CapInh)
}

// capset injects capset(2) for the calling thread.
func (r *restorer) capset(p *rproc, in *ptrace.Injector, eff, prm, inh uint64) error {
	b := binary.LittleEndian.AppendUint32(nil, linuxCapabilityVersion3)
	b = binary.LittleEndian.AppendUint32(b, 0) // pid 0: the caller
	for _, half := range []int{0, 32} {
		for _, v := range []uint64{eff, prm, inh} {
			b = binary.LittleEndian.AppendUint32(b, uint32(v>>half))
		}
	}
	if err := p.mem.Write(r.scratch+offStruct, b); err != nil {
		return err
	}
	if _, err := in.Syscall(unix.SYS_CAPSET, r.scratch+offStruct, r.scratch+offStruct+8); err != nil {
		return fmt.Errorf("capset eff %#x prm %#x inh %#x: %w", eff, prm, inh, err)
	}
	return nil
}

// currentCaps reads a thread's capability sets now.
func currentCaps(pid, tid int) ([5]uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
	if err != nil {
		return [5]uint64{}, err
	}
	st, err := procfs.ParseStatus(b)
	if err != nil {
		return [5]uint64{}, err
	}
	return [5]uint64{st.CapInh, st.CapPrm, st.CapEff, st.CapBnd, st.CapAmb}, nil
}
