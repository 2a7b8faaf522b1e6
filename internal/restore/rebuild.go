package restore

import (
	"encoding/binary"
	"fmt"
	"runtime"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

const (
	prSetMM       = 35
	prSetMMMap    = 14
	prSetName     = 15
	ssDisable     = 2
	ssAutoDisarm  = 1 << 31
	robustHeadLen = 24
)

// rebuild turns a bare copy of the helper into the saved process.
func (r *restorer) rebuild(p *rproc) error {
	img := p.img
	in := p.in
	mem, err := ptrace.OpenMem(p.pid)
	if err != nil {
		return err
	}
	p.mem = mem
	defer mem.Close()
	fail := func(what string, err error) error {
		return fmt.Errorf("restoring process %d (%s): %s: %w", img.PID, img.Comm, what, err)
	}
	if err := r.moveVdso(p); err != nil {
		return fail("moving vdso", err)
	}
	// Memory layout.
	if r.pre != nil {
		// The root inherited the staged regions from the helper.
		if err := r.pre.unmapUnclaimed(in); err != nil {
			return fail("staged memory", err)
		}
	}
	for _, m := range img.Mappings {
		if ok, err := r.mapPrestaged(p, m); ok {
			if err != nil {
				return fail(fmt.Sprintf("protecting staged %#x-%#x", m.Start, m.End), err)
			}
			continue
		}
		if err := r.mapOne(p, m); err != nil {
			return fail(fmt.Sprintf("mapping %#x-%#x %s", m.Start, m.End, m.Path), err)
		}
	}
	if err := r.writePages(p); err != nil {
		return fail("writing memory", err)
	}
	// mm fields, auxv and /proc/PID/exe.
	mm := ptrace.MMMap{StartCode: img.MM.StartCode, EndCode: img.MM.EndCode, StartData: img.MM.StartData,
		EndData: img.MM.EndData, StartBrk: img.MM.StartBrk, Brk: img.MM.Brk, StartStack: img.MM.StartStack,
		ArgStart: img.MM.ArgStart, ArgEnd: img.MM.ArgEnd, EnvStart: img.MM.EnvStart, EnvEnd: img.MM.EnvEnd,
		Auxv: r.scratch + offAuxv, ExeFD: ^uint32(0)}
	var aux []byte
	for _, v := range append(append([]uint64(nil), img.Auxv...), 0, 0) {
		aux = binary.LittleEndian.AppendUint64(aux, v)
	}
	if len(aux) > 0x1000 {
		return fail("auxv", fmt.Errorf("%d bytes is too long", len(aux)))
	}
	mm.AuxvSize = uint32(len(aux))
	if err := mem.Write(r.scratch+offAuxv, aux); err != nil {
		return err
	}
	exeFD := -1
	if f := r.exe[img.PID]; f != nil {
		if exeFD, err = r.getFD(in, int(f.Fd())); err != nil {
			return fail("passing the executable", err)
		}
		mm.ExeFD = uint32(exeFD)
	}
	if err := mem.Write(r.scratch+offMMMap, mm.Bytes()); err != nil {
		return err
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, prSetMM, prSetMMMap, r.scratch+offMMMap, ptrace.MMMapSize); err != nil {
		return fail("prctl(PR_SET_MM_MAP)", err)
	}
	if exeFD >= 0 {
		if _, err := in.Syscall(unix.SYS_CLOSE, uint64(exeFD)); err != nil {
			return err
		}
	}
	if img.Cwd != "" {
		if err := r.putString(mem, img.Cwd); err != nil {
			return fail("cwd", err)
		}
		if _, err := in.Syscall(unix.SYS_CHDIR, r.scratch+offString); err != nil {
			return fail("chdir "+img.Cwd, err)
		}
	}
	if _, err := in.Syscall(unix.SYS_UMASK, uint64(img.Umask)); err != nil {
		return fail("umask", err)
	}
	if _, err := in.Syscall(unix.SYS_PERSONALITY, uint64(img.Personality)); err != nil {
		return fail("personality", err)
	}
	// Files: each is taken from the restorer with pidfd_getfd and moved to
	// its number.
	for _, fd := range img.FDs {
		src := r.files[fd]
		got, err := r.getFD(in, int(src.Fd()))
		if err != nil {
			return fail(fmt.Sprintf("fd %d (%s)", fd.Num, fd.Path), err)
		}
		if got != fd.Num {
			fl := uint64(0)
			if fd.CloExec {
				fl = unix.O_CLOEXEC
			}
			if _, err := in.Syscall(unix.SYS_DUP3, uint64(got), uint64(fd.Num), fl); err != nil {
				return fail(fmt.Sprintf("dup3 to fd %d", fd.Num), err)
			}
			if _, err := in.Syscall(unix.SYS_CLOSE, uint64(got)); err != nil {
				return err
			}
		} else if !fd.CloExec {
			if _, err := in.Syscall(unix.SYS_FCNTL, uint64(got), unix.F_SETFD, 0); err != nil {
				return err
			}
		}
	}
	if err := r.fdState(p); err != nil {
		return fail("file state", err)
	}
	// Limits after the files: an fd above a lowered RLIMIT_NOFILE can be
	// kept but not created.
	for _, l := range img.Rlimits {
		if err := unix.Prlimit(p.pid, l.Resource, &unix.Rlimit{Cur: l.Cur, Max: l.Max}, nil); err != nil {
			r.warn("process %d: cannot set rlimit %d to %d/%d: %v", img.PID, l.Resource, l.Cur, l.Max, err)
		}
	}
	// Signal dispositions: every catchable signal, saved or default.
	acts := map[int]image.SigAction{}
	for _, a := range img.SigActions {
		acts[a.Sig] = a
	}
	for sig := 1; sig <= 64; sig++ {
		if sig == 9 || sig == 19 {
			continue
		}
		a := acts[sig]
		var b []byte
		for _, v := range []uint64{a.Handler, a.Flags, a.Restorer, a.Mask} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		if err := mem.Write(r.scratch+offStruct, b); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_RT_SIGACTION, uint64(sig), r.scratch+offStruct, 0, 8); err != nil {
			if _, saved := acts[sig]; saved {
				return fail(fmt.Sprintf("rt_sigaction(%d)", sig), err)
			}
		}
	}
	// Threads: the leader exists; the others are cloned at their TIDs.
	p.threads = []*ptrace.Injector{in}
	for _, th := range img.Threads[1:] {
		args := ptrace.CloneArgs{Flags: cloneThreadFlags, SetTID: r.scratch + offSetTID, SetTIDSize: 1}
		tid, err := r.clone(in, &args, th.TID)
		if err != nil {
			return fail(fmt.Sprintf("creating thread %d", th.TID), err)
		}
		tin, err := ptrace.NewInjector(tid, r.scratch+offSyscall)
		if err != nil {
			return err
		}
		if err := ptrace.SetSigmask(tid, ^uint64(0)); err != nil {
			return err
		}
		p.threads = append(p.threads, tin)
	}
	for i, th := range img.Threads {
		if err := r.threadState(p, p.threads[i], th); err != nil {
			return fail(fmt.Sprintf("thread %d", th.TID), err)
		}
	}
	// Pending signals, queued from the leader (the kernel only lets a
	// process queue arbitrary siginfo to itself).
	for _, s := range img.Pending {
		if err := mem.Write(r.scratch+offSiginfo, s.Raw); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_RT_SIGQUEUEINFO, uint64(img.PID), uint64(s.Signo), r.scratch+offSiginfo); err != nil {
			return fail(fmt.Sprintf("queueing %s", image.SignalName(s.Signo)), err)
		}
	}
	for _, th := range img.Threads {
		for _, s := range th.Pending {
			if err := mem.Write(r.scratch+offSiginfo, s.Raw); err != nil {
				return err
			}
			if _, err := in.Syscall(unix.SYS_RT_TGSIGQUEUEINFO, uint64(img.PID), uint64(th.TID), uint64(s.Signo), r.scratch+offSiginfo); err != nil {
				return fail(fmt.Sprintf("queueing %s to thread %d", image.SignalName(s.Signo), th.TID), err)
			}
		}
	}
	for _, it := range img.Itimers {
		var b []byte
		for _, v := range []int64{it.Interval / 1e6, it.Interval % 1e6, it.Value / 1e6, it.Value % 1e6} {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		if err := mem.Write(r.scratch+offStruct, b); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_SETITIMER, uint64(it.Which), r.scratch+offStruct, 0); err != nil {
			return fail("setitimer", err)
		}
	}
	if err := r.restoreTimers(p); err != nil {
		return fail("POSIX timers", err)
	}
	if _, err := in.Syscall(unix.SYS_CLOSE, uint64(r.pidfd)); err != nil {
		return fail("closing the restorer's pidfd", err)
	}
	r.restoreSched(p)
	if err := r.setIdentity(p); err != nil {
		return fail("credentials and security", err)
	}
	// The last injected call removes the scratch area; every thread is now
	// in a syscall-exit stop it will never return to.
	if _, err := in.Syscall(unix.SYS_MUNMAP, r.scratch, scratchLen); err != nil {
		return fail("unmapping the scratch area", err)
	}
	return nil
}

// threadState restores what each thread keeps in the kernel.
func (r *restorer) threadState(p *rproc, in *ptrace.Injector, th *image.Thread) error {
	if _, err := in.Syscall(unix.SYS_SET_TID_ADDRESS, th.TIDAddress); err != nil {
		return fmt.Errorf("set_tid_address: %w", err)
	}
	if th.RobustList != 0 {
		if _, err := in.Syscall(unix.SYS_SET_ROBUST_LIST, th.RobustList, th.RobustLen); err != nil {
			return fmt.Errorf("set_robust_list: %w", err)
		}
	}
	if th.Altstack.Flags&ssDisable == 0 && th.Altstack.Size != 0 {
		var b []byte
		b = binary.LittleEndian.AppendUint64(b, th.Altstack.SP)
		b = binary.LittleEndian.AppendUint64(b, uint64(uint32(th.Altstack.Flags)&ssAutoDisarm))
		b = binary.LittleEndian.AppendUint64(b, th.Altstack.Size)
		if err := p.mem.Write(r.scratch+offStruct, b); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_SIGALTSTACK, r.scratch+offStruct, 0); err != nil {
			return fmt.Errorf("sigaltstack: %w", err)
		}
	}
	if th.Rseq.Pointer != 0 {
		if _, err := in.Syscall(unix.SYS_RSEQ, th.Rseq.Pointer, uint64(th.Rseq.Size), 0, uint64(th.Rseq.Signature)); err != nil {
			return fmt.Errorf("rseq registration at %#x: %w", th.Rseq.Pointer, err)
		}
	}
	if th.Comm != "" {
		name := th.Comm
		if len(name) > 15 {
			name = name[:15]
		}
		if err := r.putString(p.mem, name); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_PRCTL, prSetName, r.scratch+offString); err != nil {
			return fmt.Errorf("PR_SET_NAME: %w", err)
		}
	}
	return nil
}

func (r *restorer) putString(mem *ptrace.Mem, s string) error {
	if len(s)+1 > maxStringLen {
		return fmt.Errorf("path of %d bytes is too long", len(s))
	}
	return mem.Write(r.scratch+offString, append([]byte(s), 0))
}

// getFD duplicates the restorer's fd into the tracee (same open file
// description) and returns the tracee's new fd number.
func (r *restorer) getFD(in *ptrace.Injector, fd int) (int, error) {
	got, err := in.Syscall(unix.SYS_PIDFD_GETFD, uint64(r.pidfd), uint64(fd), 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_getfd: %w", err)
	}
	return int(got), nil
}

// mapOne maps one saved area at its address with its final protection;
// contents are written through /proc/PID/mem, which ignores protection.
func (r *restorer) mapOne(p *rproc, m *image.Mapping) error {
	prot := protOf(m)
	in := p.in
	switch m.Kind {
	case image.KindVvar, image.KindVvarVclock, image.KindVdso, image.KindVsyscall:
		return nil
	case image.KindShm:
		return r.mapShm(in, m, prot)
	case image.KindFile:
		f := r.mapFiles[fmt.Sprintf("%s\x00%v", m.Path, m.Shared && m.Prot&image.ProtWrite != 0)]
		fd, err := r.getFD(in, int(f.Fd()))
		if err != nil {
			return err
		}
		flags := uint64(unix.MAP_FIXED | unix.MAP_PRIVATE)
		if m.Shared {
			flags = unix.MAP_FIXED | unix.MAP_SHARED
		}
		if _, err := in.Syscall(unix.SYS_MMAP, m.Start, m.Size(), prot, flags, uint64(fd), m.Offset); err != nil {
			return err
		}
		_, err = in.Syscall(unix.SYS_CLOSE, uint64(fd))
		return err
	default:
		flags := uint64(unix.MAP_FIXED | unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE)
		if m.Kind == image.KindStack {
			flags |= unix.MAP_GROWSDOWN
		}
		_, err := in.Syscall(unix.SYS_MMAP, m.Start, m.Size(), prot, flags, ^uint64(0), 0)
		return err
	}
}

const pageBatch = 16 << 20

// pageSegmenter is a PageReader that hands out saved memory as slices of
// its own verified buffers (procstore's does), so pages go from there into
// the process without a staging copy.
type pageSegmenter interface {
	PageSegments(pid int, addr, n uint64, fn func(addr uint64, b []byte) error) error
}

// parallelSegmenter is a PageReader that hands out saved memory from
// several goroutines at once, each piece valid during the call (procstore's
// does).
type parallelSegmenter interface {
	ParallelPageSegments(pid, workers int, fn func(addr uint64, b []byte) error) error
}

// writeBatch bounds the bytes gathered for one vectored write.
const writeBatch = 8 << 20

func (r *restorer) writePages(p *rproc) error {
	ranges, err := r.pr.Ranges(p.img.PID)
	if err != nil {
		return err
	}
	if r.pre != nil {
		return r.writePrestaged(p, ranges)
	}
	if ps, ok := r.pr.(parallelSegmenter); ok {
		// UFFDIO_COPY and process_vm_writev need no tracer: the workers
		// write the pages of the chunk each has just read and verified.
		f := r.newPageFiller(p)
		defer f.close()
		return ps.ParallelPageSegments(p.img.PID, runtime.GOMAXPROCS(0), f.write)
	}
	return r.writeRanges(p, ranges)
}

// writeRanges writes the saved pages of ranges into the process, from the
// reader's own buffers when it hands them out, else in batches.
func (r *restorer) writeRanges(p *rproc, ranges []image.Range) error {
	if ps, ok := r.pr.(pageSegmenter); ok {
		return writeSegments(ps, p.img.PID, ranges, p.mem)
	}
	buf := make([]byte, pageBatch)
	for _, rg := range ranges {
		for off := uint64(0); off < rg.Len; off += pageBatch {
			n := min(rg.Len-off, pageBatch)
			b := buf[:n]
			if err := r.pr.ReadPages(p.img.PID, rg.Addr+off, b); err != nil {
				return err
			}
			if err := p.mem.Write(rg.Addr+off, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeSegments writes each range from the reader's chunk slices with
// process_vm_writev, gathering contiguous slices into one call.
func writeSegments(ps pageSegmenter, pid int, ranges []image.Range, mem *ptrace.Mem) error {
	var (
		bufs  [][]byte
		start uint64 // address of bufs[0]
		size  uint64
	)
	flush := func() error {
		if len(bufs) == 0 {
			return nil
		}
		err := mem.WriteV(start, bufs)
		clear(bufs) // let the chunks go
		bufs, size = bufs[:0], 0
		return err
	}
	for _, rg := range ranges {
		err := ps.PageSegments(pid, rg.Addr, rg.Len, func(addr uint64, b []byte) error {
			if len(bufs) > 0 && (start+size != addr || size >= writeBatch) {
				if err := flush(); err != nil {
					return err
				}
			}
			if len(bufs) == 0 {
				start = addr
			}
			bufs = append(bufs, b)
			size += uint64(len(b))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return flush()
}

// moveVdso moves [vvar], [vvar_vclock] and [vdso] together to the saved
// addresses, through a temporary area so no move lands on another's source.
func (r *restorer) moveVdso(p *rproc) error {
	v := p.img.Vdso
	if v == nil {
		return nil
	}
	maps, err := readMaps(p.pid)
	if err != nil {
		return err
	}
	cur := vdsoOf(maps)
	type piece struct{ from, to image.Range }
	pieces := []piece{{cur.vvar, v.Vvar}, {cur.vclock, v.VvarVclock}, {cur.vdso, v.Vdso}}
	if cur.vvar.Addr == v.Vvar.Addr {
		return nil
	}
	base := cur.vvar.Addr
	span := cur.vdso.Addr + cur.vdso.Len - base
	var used []image.Range
	for _, m := range maps {
		used = append(used, image.Range{Addr: m.Start, Len: m.End - m.Start})
	}
	for _, m := range p.img.Mappings {
		used = append(used, image.Range{Addr: m.Start, Len: m.Size()})
	}
	tmp, err := findFree(used, span)
	if err != nil {
		return err
	}
	for phase := 0; phase < 2; phase++ {
		for _, pc := range pieces {
			if pc.from.Len == 0 {
				continue
			}
			src, dst := pc.from.Addr, tmp+(pc.from.Addr-base)
			if phase == 1 {
				src, dst = dst, pc.to.Addr
			}
			if _, err := p.in.Syscall(unix.SYS_MREMAP, src, pc.from.Len, pc.from.Len, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, dst); err != nil {
				return fmt.Errorf("mremap %#x -> %#x: %w", src, dst, err)
			}
		}
	}
	return nil
}

// finishZombie makes a process that was a zombie exit again with its status.
func (r *restorer) finishZombie(p *rproc) error {
	st := unix.WaitStatus(p.img.ExitCode)
	regs := p.in.Saved
	regs.Orig_rax = ^uint64(0)
	regs.Rip = r.scratch + offSyscall
	if st.Signaled() {
		// Die of the same signal: kill(getpid(), sig) with it unblocked.
		_ = unix.Prlimit(p.pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
		if err := ptrace.SetSigmask(p.pid, 0); err != nil {
			return err
		}
		// kill(getpid(), sig) runs in the process: its own view of its PID.
		regs.Rax, regs.Rdi, regs.Rsi = unix.SYS_KILL, uint64(p.img.PID), uint64(st.Signal())
		if err := ptrace.SetRegs(p.pid, &regs); err != nil {
			return err
		}
		return ptrace.Detach(p.pid, 0)
	}
	regs.Rax = unix.SYS_EXIT_GROUP
	regs.Rdi = uint64(st.ExitStatus())
	if err := ptrace.SetRegs(p.pid, &regs); err != nil {
		return err
	}
	return ptrace.Detach(p.pid, 0)
}

// release puts back every thread's registers, XSAVE state and signal mask,
// and lets the process run.
func (r *restorer) release(p *rproc) error {
	for i, th := range p.img.Threads {
		tid := p.threads[i].TID
		regs := fixRestart(th.Regs)
		if err := ptrace.SetRegs(tid, (*unix.PtraceRegs)(&regs)); err != nil {
			return fmt.Errorf("thread %d: setting registers: %w", tid, err)
		}
		if err := ptrace.SetXState(tid, th.XSave); err != nil {
			return fmt.Errorf("thread %d: setting XSAVE state: %w", tid, err)
		}
		if err := ptrace.SetSigmask(tid, th.Sigmask); err != nil {
			return fmt.Errorf("thread %d: setting signal mask: %w", tid, err)
		}
	}
	for _, in := range p.threads {
		if err := ptrace.Detach(in.TID, 0); err != nil {
			return fmt.Errorf("thread %d: detaching: %w", in.TID, err)
		}
	}
	p.done = true
	return nil
}

const (
	errRestartNoHand       = 514
	errRestartRestartblock = 516
)

// fixRestart prepares the registers of a thread that was stopped inside a
// system call. PTRACE_DETACH leaves the kernel's restart logic to run on
// the registers we set, so -ERESTARTSYS, -ERESTARTNOINTR and
// -ERESTARTNOHAND are left verbatim: the kernel re-executes the call, or
// returns EINTR when a handler runs, exactly as if the process had never
// stopped. -ERESTART_RESTARTBLOCK would become restart_syscall, whose
// restart block did not survive (the program would see EINTR): it is turned
// into -ERESTARTNOHAND, so the original call is re-executed with its
// original arguments (a relative sleep starts over) unless a signal handler
// runs first, in which case the program sees EINTR as it would have. We
// never also move rip ourselves: the kernel does that once.
func fixRestart(r image.Regs) image.Regs {
	if int64(r.Orig_rax) >= 0 && int64(r.Rax) == -errRestartRestartblock {
		r.Rax = ^uint64(errRestartNoHand - 1) // -ERESTARTNOHAND
	}
	return r
}
