package dump

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/dirty"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

func (h *Handle) collect(ctx context.Context, root int, pw image.PageWriter) (*image.Tree, error) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	tree := &image.Tree{Version: image.FormatVersion, Root: root, Kernel: unix.ByteSliceToString(uts.Release[:]), BootID: procfs.BootID()}
	ids := newIDCache()
	pids := map[int]bool{}
	for _, p := range h.procs {
		pids[p.pid] = true
	}
	for _, p := range h.procs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ip, err := h.dumpProcess(p, tree, ids, pw)
		if err != nil {
			if gone(p.pid) {
				return nil, fmt.Errorf("process %d exited during dump: %w", p.pid, err)
			}
			return nil, err
		}
		tree.Processes = append(tree.Processes, ip)
	}
	if tree.Processes[0].PPID != 0 && pids[tree.Processes[0].PPID] {
		return nil, fmt.Errorf("internal error: root %d has a parent in the tree", root)
	}
	for _, ip := range tree.Processes[1:] {
		if !pids[ip.PPID] {
			return nil, fmt.Errorf("process %d: parent %d is not in the tree", ip.PID, ip.PPID)
		}
		tree.Process(ip.PPID).Children = append(tree.Process(ip.PPID).Children, ip.PID)
	}
	if err := dumpSysvIPC(tree, pids); err != nil {
		return nil, err
	}
	shareDeleted(tree, ids)
	if err := linkFiles(tree, h.opts); err != nil {
		return nil, err
	}
	if err := tree.Validate(); err != nil {
		return nil, fmt.Errorf("dump produced an inconsistent image: %w", err)
	}
	return tree, nil
}

func (h *Handle) dumpProcess(p *proc, tree *image.Tree, ids *idCache, pw image.PageWriter) (*image.Process, error) {
	st, err := readStat(p.pid)
	if err != nil {
		return nil, err
	}
	ip := &image.Process{PID: p.pid, PPID: st.PPID, PGID: st.PGID, SID: st.SID, Comm: st.Comm, StartTime: st.StartTime, Stopped: p.stopped}
	if p.zombie {
		ip.Zombie = true
		ip.ExitCode = st.ExitCode
		return ip, nil
	}
	sb, err := procfs.Read(p.pid, "status")
	if err != nil {
		return nil, err
	}
	status, err := procfs.ParseStatus(sb)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", p.pid, err)
	}
	if tb, err := procfs.Read(p.pid, "timers"); err == nil {
		if ip.Timers, err = parseTimers(tb); err != nil {
			return nil, fmt.Errorf("process %d (%s): %w", p.pid, st.Comm, err)
		}
	}
	ip.Umask = status.Umask
	ip.Creds = image.Creds{UID: status.UID, GID: status.GID, Groups: status.Groups}
	ip.MM = image.MM{StartCode: st.StartCode, EndCode: st.EndCode, StartData: st.StartData, EndData: st.EndData,
		StartBrk: st.StartBrk, StartStack: st.StartStack, ArgStart: st.ArgStart, ArgEnd: st.ArgEnd,
		EnvStart: st.EnvStart, EnvEnd: st.EnvEnd}
	if b, err := procfs.Read(p.pid, "personality"); err == nil {
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 32)
		ip.Personality = uint32(v)
	}
	if ab, err := procfs.Read(p.pid, "auxv"); err == nil {
		aux, err := procfs.ParseAuxv(ab)
		if err != nil {
			return nil, fmt.Errorf("process %d: %w", p.pid, err)
		}
		for _, a := range aux {
			ip.Auxv = append(ip.Auxv, a.Type, a.Value)
		}
	}
	if ip.Cwd, err = os.Readlink(procfs.Path(p.pid, "cwd")); err != nil {
		return nil, fmt.Errorf("process %d: reading cwd: %w", p.pid, err)
	}
	if strings.HasSuffix(ip.Cwd, " (deleted)") {
		return nil, fmt.Errorf("process %d (%s): working directory %s was removed: %w", p.pid, st.Comm, ip.Cwd, ErrUnsupported)
	}
	if r, err := os.Readlink(procfs.Path(p.pid, "root")); err == nil && r != "/" {
		return nil, fmt.Errorf("process %d (%s): chroot to %s: %w", p.pid, st.Comm, r, ErrUnsupported)
	}
	if ip.ExePath, err = os.Readlink(procfs.Path(p.pid, "exe")); err == nil {
		ip.Exe, err = ids.get(procfs.Path(p.pid, "exe"))
		if err != nil {
			return nil, fmt.Errorf("process %d: executable: %w", p.pid, err)
		}
	}
	if ip.Rlimits, err = rlimits(p.pid); err != nil {
		return nil, err
	}
	mb, err := procfs.Read(p.pid, "maps")
	if err != nil {
		return nil, err
	}
	maps, err := procfs.ParseMaps(mb)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", p.pid, err)
	}
	if ip.Mappings, err = classifyMappings(p.pid, st.Comm, maps, ids); err != nil {
		return nil, err
	}
	if ip.FDs, err = h.dumpFDs(p.pid, st.Comm, ids, h.opts, tree); err != nil {
		return nil, err
	}
	ip.CTTY = controllingTTY(p.pid, st, ip.FDs)
	mem, err := ptrace.OpenMem(p.pid)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", p.pid, err)
	}
	defer mem.Close()
	ip.Vdso, err = vdsoLayout(ip.Mappings, mem)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", p.pid, err)
	}
	for _, t := range p.threads {
		th, err := h.dumpThread(p.pid, t, tree)
		if err != nil {
			return nil, err
		}
		ip.Threads = append(ip.Threads, th)
	}
	if err := h.tr.Do(func() error { return inject(p, ip, mem) }); err != nil {
		return nil, err
	}
	if err := h.tr.Do(func() error {
		sh, err := ptrace.PeekSiginfo(p.pid, true)
		if err != nil {
			return fmt.Errorf("process %d: reading shared pending signals: %w", p.pid, err)
		}
		ip.Pending = siginfos(sh)
		return nil
	}); err != nil {
		return nil, err
	}
	// Which areas hold no page at all (huge reservations): those need no
	// pagemap read.
	resident := readResident(p.pid)
	fp, err := h.opts.PreCopy.forProcess(p.pid, pw)
	if err != nil {
		return nil, err
	}
	var saved *[]dirty.Range
	if h.opts.KeepTracking {
		saved = new([]dirty.Range)
	}
	if err := dumpPages(p.pid, ip.Mappings, resident, mem, pw, fp, saved); err != nil {
		return nil, err
	}
	if h.opts.KeepTracking {
		if err := h.opts.PreCopy.retrack(h, p, *saved); err != nil {
			return nil, err
		}
	}
	return ip, nil
}

func siginfos(raw [][]byte) []image.Siginfo {
	var out []image.Siginfo
	for _, r := range raw {
		out = append(out, image.Siginfo{Signo: int(int32(binary.LittleEndian.Uint32(r))), Raw: r})
	}
	return out
}

func (h *Handle) dumpThread(pid int, t *thread, tree *image.Tree) (*image.Thread, error) {
	th := &image.Thread{TID: t.tid, Regs: image.Regs(t.regs), Sigmask: t.mask}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", pid, t.tid)); err == nil {
		th.Comm = strings.TrimSuffix(string(b), "\n")
	}
	err := h.tr.Do(func() error {
		xs, err := ptrace.GetXState(t.tid)
		if err != nil {
			return fmt.Errorf("thread %d: reading XSAVE state: %w", t.tid, err)
		}
		th.XSave = xs
		if tree.CPU.XStateSize == 0 {
			xf, err := ptrace.XFeatures()
			if err != nil {
				return fmt.Errorf("reading supported XSAVE features: %w", err)
			}
			tree.CPU = image.CPU{XFeatures: xf, XStateSize: len(xs)}
		}
		rc, err := ptrace.GetRseqConfig(t.tid)
		if err != nil && err != unix.EIO && err != unix.EINVAL {
			return fmt.Errorf("thread %d: reading rseq configuration: %w", t.tid, err)
		}
		th.Rseq = image.Rseq{Pointer: rc.Pointer, Size: rc.Size, Signature: rc.Signature}
		if th.RobustList, th.RobustLen, err = ptrace.GetRobustList(t.tid); err != nil {
			return fmt.Errorf("thread %d: reading robust futex list: %w", t.tid, err)
		}
		pend, err := ptrace.PeekSiginfo(t.tid, false)
		if err != nil {
			return fmt.Errorf("thread %d: reading pending signals: %w", t.tid, err)
		}
		th.Pending = siginfos(pend)
		if err := threadIdentity(pid, t.tid, th); err != nil {
			return err
		}
		for _, s := range t.stashed {
			// Signals that were being delivered when we froze the
			// thread go back as pending ones.
			raw := make([]byte, ptrace.SiginfoSize)
			binary.LittleEndian.PutUint32(raw, uint32(s))
			binary.LittleEndian.PutUint32(raw[8:], ^uint32(5)) // SI_TKILL
			th.Pending = append(th.Pending, image.Siginfo{Signo: s, Raw: raw})
		}
		return nil
	})
	return th, err
}

// vdsoLayout records where [vvar], [vvar_vclock] and [vdso] are, with a hash of
// the vdso code so restore can check it runs on the same vdso.
func vdsoLayout(ms []*image.Mapping, mem *ptrace.Mem) (*image.VdsoLayout, error) {
	var l image.VdsoLayout
	found := false
	for _, m := range ms {
		r := image.Range{Addr: m.Start, Len: m.Size()}
		switch m.Kind {
		case image.KindVvar:
			l.Vvar = r
		case image.KindVvarVclock:
			l.VvarVclock = r
		case image.KindVdso:
			l.Vdso = r
			found = true
			b := make([]byte, m.Size())
			if err := mem.Read(m.Start, b); err != nil {
				return nil, fmt.Errorf("reading vdso: %w", err)
			}
			sum := sha256.Sum256(b)
			l.Hash = hex.EncodeToString(sum[:])
		}
	}
	if !found {
		return nil, nil
	}
	return &l, nil
}

// findSyscall returns the address of a syscall instruction (0f 05) in the vdso.
func findSyscall(ms []*image.Mapping, mem *ptrace.Mem) (uint64, error) {
	for _, m := range ms {
		if m.Kind != image.KindVdso {
			continue
		}
		b := make([]byte, m.Size())
		if err := mem.Read(m.Start, b); err != nil {
			return 0, err
		}
		if i := bytes.Index(b, []byte{0x0f, 0x05}); i >= 0 {
			return m.Start + uint64(i), nil
		}
	}
	return 0, errors.New("no syscall instruction in the vdso")
}

const prGetTIDAddress = 40

// inject runs on the tracer thread: it asks the stopped process, through
// injected system calls, for what /proc does not show.
func inject(p *proc, ip *image.Process, mem *ptrace.Mem) (err error) {
	sys, err := findSyscall(ip.Mappings, mem)
	var poked []byte
	var pokeAt uint64
	if err != nil {
		// No vdso: write a syscall instruction at the leader's rip and
		// put the original bytes back afterwards.
		pokeAt = p.threads[0].regs.Rip
		poked = make([]byte, 2)
		if err := mem.Read(pokeAt, poked); err != nil {
			return fmt.Errorf("process %d: %w", p.pid, err)
		}
		if err := mem.Write(pokeAt, []byte{0x0f, 0x05}); err != nil {
			return fmt.Errorf("process %d: %w", p.pid, err)
		}
		sys = pokeAt
		defer func() {
			if werr := mem.Write(pokeAt, poked); werr != nil && err == nil {
				err = werr
			}
		}()
	}
	in := &ptrace.Injector{TID: p.pid, SysAddr: sys, Saved: p.threads[0].regs}
	defer func() {
		if rerr := in.Restore(); rerr != nil && err == nil {
			err = fmt.Errorf("process %d: restoring registers: %w", p.pid, rerr)
		}
	}()
	const scratchLen = 4096
	scratch, err := in.Syscall(unix.SYS_MMAP, 0, scratchLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("process %d: mapping a scratch page: %w", p.pid, err)
	}
	defer func() {
		if _, uerr := in.Syscall(unix.SYS_MUNMAP, scratch, scratchLen); uerr != nil && err == nil {
			err = uerr
		}
	}()
	brk, err := in.Syscall(unix.SYS_BRK, 0)
	if err != nil {
		return fmt.Errorf("process %d: brk: %w", p.pid, err)
	}
	ip.MM.Brk = brk
	buf := make([]byte, 32)
	for sig := 1; sig <= 64; sig++ {
		if sig == 9 || sig == 19 {
			continue
		}
		if _, err := in.Syscall(unix.SYS_RT_SIGACTION, uint64(sig), 0, scratch, 8); err != nil {
			if sig == 32 || sig == 33 {
				continue // reserved by glibc, still readable but tolerate
			}
			return fmt.Errorf("process %d: reading disposition of signal %d: %w", p.pid, sig, err)
		}
		if err := mem.Read(scratch, buf); err != nil {
			return err
		}
		a := image.SigAction{Sig: sig, Handler: le(buf, 0), Flags: le(buf, 8), Restorer: le(buf, 16), Mask: le(buf, 24)}
		if a.Handler != 0 || a.Flags != 0 || a.Mask != 0 {
			ip.SigActions = append(ip.SigActions, a)
		}
	}
	for which := 0; which < 3; which++ {
		if _, err := in.Syscall(unix.SYS_GETITIMER, uint64(which), scratch); err != nil {
			return fmt.Errorf("process %d: getitimer: %w", p.pid, err)
		}
		if err := mem.Read(scratch, buf); err != nil {
			return err
		}
		it := image.Itimer{Which: which, Interval: int64(le(buf, 0))*1e6 + int64(le(buf, 8)), Value: int64(le(buf, 16))*1e6 + int64(le(buf, 24))}
		if it.Interval != 0 || it.Value != 0 {
			ip.Itimers = append(ip.Itimers, it)
		}
	}
	if err := injectTimers(in, ip, mem, scratch); err != nil {
		return err
	}
	for i, t := range p.threads {
		tin := in
		if i > 0 {
			tin = &ptrace.Injector{TID: t.tid, SysAddr: sys, Saved: t.regs}
		}
		th := ip.Threads[i]
		if _, err := tin.Syscall(unix.SYS_PRCTL, prGetTIDAddress, scratch); err != nil {
			return fmt.Errorf("thread %d: reading tid address: %w", t.tid, err)
		}
		if err := mem.Read(scratch, buf[:8]); err != nil {
			return err
		}
		th.TIDAddress = le(buf, 0)
		if _, err := tin.Syscall(unix.SYS_SIGALTSTACK, 0, scratch); err != nil {
			return fmt.Errorf("thread %d: reading alternate signal stack: %w", t.tid, err)
		}
		if err := mem.Read(scratch, buf[:24]); err != nil {
			return err
		}
		th.Altstack = image.Altstack{SP: le(buf, 0), Flags: int32(binary.LittleEndian.Uint32(buf[8:])), Size: le(buf, 16)}
		if err := injectSecurebits(tin, th); err != nil {
			return err
		}
		if i > 0 {
			if err := tin.Restore(); err != nil {
				return fmt.Errorf("thread %d: restoring registers: %w", t.tid, err)
			}
		}
	}
	return nil
}

func le(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

// rlimits reads the resource limits with prlimit, or from /proc/PID/limits
// when prlimit is refused (another uid, without CAP_SYS_RESOURCE).
func rlimits(pid int) ([]image.Rlimit, error) {
	var out []image.Rlimit
	for r := 0; r < 16; r++ {
		var l unix.Rlimit
		err := unix.Prlimit(pid, r, nil, &l)
		if err == unix.EPERM {
			return rlimitsFromProc(pid)
		}
		if err != nil {
			return nil, fmt.Errorf("process %d: reading rlimit %d: %w", pid, r, err)
		}
		out = append(out, image.Rlimit{Resource: r, Cur: l.Cur, Max: l.Max})
	}
	return out, nil
}

func rlimitsFromProc(pid int) ([]image.Rlimit, error) {
	b, err := procfs.Read(pid, "limits")
	if err != nil {
		return nil, err
	}
	ls, err := procfs.ParseLimits(b)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	var out []image.Rlimit
	for _, l := range ls {
		if r, ok := procfs.LimitNames[l.Name]; ok {
			out = append(out, image.Rlimit{Resource: r, Cur: l.Soft, Max: l.Hard})
		}
	}
	return out, nil
}
