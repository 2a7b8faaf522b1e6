package restore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

type restorer struct {
	tree *image.Tree
	pr   image.PageReader
	opts Options
	res  *Result

	files    map[*image.FD]*os.File
	mapFiles map[string]*os.File
	exe      map[int]*os.File
	extra    []*os.File

	epollDone map[int]bool        // descriptions whose interest list is filled
	sockets   map[uint64]int      // unix sockets of the tree, by inode (owned by extra)
	inet      map[uint64]*os.File // TCP and UDP sockets, by inode (owned by extra)
	shm       map[uint64]*os.File // shared memory objects, by SharedMem.ID (owned by extra)

	ttys       map[string]*os.File // new pty slaves by the terminal they replace (Options.NewTTY)
	ttySet     map[*os.File]bool   // terminals given their saved settings
	shmCreated []int               // System V segments this restore created
	shmRemove  []int               // ... and those to remove once attached (removed at dump)
	ipcCreated []ipcObject         // System V semaphore sets and message queues this restore created
	ctty       map[int]bool        // session leaders whose controlling terminal is restored

	netns      *os.File // a container's new network namespace (container.go)
	ipcns      *os.File // ... and IPC namespace
	cgfd       int      // the helper's fd of Options.Cgroup, for the root's clone3
	intoCgroup bool     // ... when there is one
	helper     int
	scratch    uint64
	pidfd      int // number of the tracees' pidfd for the restorer
	procs      []*rproc
	byPID      map[int]*rproc

	pre       *Prestage   // prestage.go
	preHelper *bareHelper // its helper, taken over
}

// rproc is a process being rebuilt.
type rproc struct {
	img     *image.Process
	pid     int              // as the restorer sees it (img.PID inside a container's PID namespace)
	in      *ptrace.Injector // leader
	threads []*ptrace.Injector
	mem     *ptrace.Mem
	done    bool
}

// Scratch layout: one area at the same address in every process.
const (
	scratchLen   = 0x4000
	offSyscall   = 0x0
	offClone     = 0x100
	offSetTID    = 0x200
	offStruct    = 0x300 // sigaction, sigaltstack, itimerval
	offMMMap     = 0x800
	offAuxv      = 0x1000
	offString    = 0x2000
	offSiginfo   = 0x3000
	maxStringLen = 0x1000
)

const (
	cloneThreadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM
)

// abort kills everything created so far and collects the deaths, so no
// zombie keeps a PID of the image. It runs on the tracer thread.
func (r *restorer) abort() {
	for _, p := range r.procs {
		_ = unix.Kill(p.pid, unix.SIGKILL)
	}
	if r.helper != 0 {
		_ = unix.Kill(r.helper, unix.SIGKILL)
	}
	reap := func(tid int) {
		for {
			ws, err := ptrace.Wait(tid)
			if err != nil || ws.Exited() || ws.Signaled() {
				return
			}
			_ = ptrace.Cont(tid, 0)
		}
	}
	for i := len(r.procs) - 1; i >= 0; i-- {
		p := r.procs[i]
		if p.done {
			continue
		}
		// Other threads first: the leader's death is reported last.
		for j := len(p.threads) - 1; j >= 1; j-- {
			reap(p.threads[j].TID)
		}
		reap(p.pid)
	}
	if r.helper != 0 {
		reap(r.helper)
	}
}

// run is the whole restore, on the tracer thread.
func (r *restorer) run(ctx context.Context) error {
	r.byPID = map[int]*rproc{}
	var helperIn *ptrace.Injector
	var err error
	if h := r.preHelper; h != nil {
		r.helper, r.scratch, helperIn = h.pid, h.scratch, h.in
		err = r.finishHelper(h)
	} else {
		helperIn, err = r.startHelper()
	}
	if err != nil {
		return err
	}
	if r.tree.Container != nil {
		if err := r.enterNamespaces(helperIn); err != nil {
			return err
		}
	}
	// Create every process, parents first, each cloned from its parent
	// while the parent is still a bare copy of the helper.
	root := r.tree.Processes[0]
	if err := r.create(helperIn, root, true); err != nil {
		return err
	}
	_ = unix.Kill(r.helper, unix.SIGKILL)
	for {
		ws, err := ptrace.Wait(r.helper)
		if err != nil || ws.Exited() || ws.Signaled() {
			break
		}
	}
	r.helper = 0
	// Process groups: leaders first, then members.
	for pass := 0; pass < 2; pass++ {
		for _, p := range r.procs {
			g := p.img.PGID
			if (pass == 0) != (g == p.img.PID) || r.byPID[g] == nil || g == p.img.SID && p.img.SID == p.img.PID {
				continue
			}
			if _, err := p.in.Syscall(unix.SYS_SETPGID, 0, uint64(g)); err != nil {
				return fmt.Errorf("process %d: joining process group %d: %w", p.img.PID, g, err)
			}
		}
	}
	for _, p := range r.procs {
		if err := r.foregroundCTTY(p); err != nil {
			return err
		}
	}
	for _, p := range r.procs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.img.Zombie {
			continue
		}
		if err := r.rebuild(p); err != nil {
			return err
		}
	}
	// Zombies die, then everyone else gets its registers back and runs.
	for _, p := range r.procs {
		if p.img.Zombie {
			if err := r.finishZombie(p); err != nil {
				return err
			}
		}
	}
	for i := len(r.procs) - 1; i >= 0; i-- {
		p := r.procs[i]
		if p.img.Zombie {
			continue
		}
		if err := r.release(p); err != nil {
			return err
		}
		if p.img.Stopped {
			// Back into the job-control stop it was in.
			_ = unix.Kill(p.pid, unix.SIGSTOP)
		}
		r.res.PIDs = append(r.res.PIDs, p.pid)
	}
	sort.Ints(r.res.PIDs)
	return nil
}

// startHelper starts the helper stopped at exec and strips it to the
// scratch area and the vdso mappings.
func (r *restorer) startHelper() (*ptrace.Injector, error) {
	var reserved []image.Range
	for _, p := range r.tree.Processes {
		for _, m := range p.Mappings {
			reserved = append(reserved, image.Range{Addr: m.Start, Len: m.Size()})
		}
	}
	h, err := spawnHelper(r.opts.Helper, reserved)
	if h != nil {
		r.helper = h.pid
	}
	if err != nil {
		return nil, err
	}
	r.scratch = h.scratch
	return h.in, r.finishHelper(h)
}

// bareHelper is a helper stopped at exec, stripped to its scratch area
// and the kernel's vdso mappings (maps is its layout before that).
type bareHelper struct {
	pid     int
	in      *ptrace.Injector
	scratch uint64
	maps    []procfs.MapEntry
}

// spawnHelper starts the helper stopped at exec and strips it: a scratch
// area free in the helper and in reserved, close_range, everything
// unmapped but the scratch area and the vdso mappings. It needs nothing
// of the image; the pid is returned with an error once the helper exists
// (the caller kills it).
func spawnHelper(path string, reserved []image.Range) (*bareHelper, error) {
	pid, err := ptrace.StartTraced(path, []string{"ckpt-restore-helper"}, nil)
	if err != nil {
		return nil, err
	}
	h := &bareHelper{pid: pid}
	if err := ptrace.SetOptions(pid, ptrace.OptsRestore); err != nil {
		return h, fmt.Errorf("helper %d: setting ptrace options: %w", pid, err)
	}
	if err := ptrace.SetSigmask(pid, ^uint64(0)); err != nil {
		return h, err
	}
	if h.maps, err = readMaps(pid); err != nil {
		return h, err
	}
	// Scratch: free in the helper and in every saved layout.
	used := append([]image.Range(nil), reserved...)
	for _, m := range h.maps {
		used = append(used, image.Range{Addr: m.Start, Len: m.End - m.Start})
	}
	if h.scratch, err = findFree(used, scratchLen); err != nil {
		return h, err
	}
	mem, err := ptrace.OpenMem(pid)
	if err != nil {
		return h, err
	}
	defer mem.Close()
	regs, err := ptrace.GetRegs(pid)
	if err != nil {
		return h, err
	}
	if err := mem.Write(regs.Rip, ptrace.Trampoline); err != nil {
		return h, fmt.Errorf("helper: writing trampoline: %w", err)
	}
	in := &ptrace.Injector{TID: pid, SysAddr: regs.Rip, Saved: regs}
	if _, err := in.Syscall(unix.SYS_MMAP, h.scratch, scratchLen, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0); err != nil {
		return h, fmt.Errorf("helper: mapping scratch area at %#x: %w", h.scratch, err)
	}
	if err := mem.Write(h.scratch+offSyscall, ptrace.Trampoline); err != nil {
		return h, err
	}
	in.SysAddr = h.scratch + offSyscall
	h.in = in
	if _, err := in.Syscall(unix.SYS_CLOSE_RANGE, 0, ^uint64(0)>>1, 0); err != nil {
		return h, fmt.Errorf("helper: close_range: %w", err)
	}
	for _, m := range h.maps {
		switch m.Path {
		case "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]":
			continue
		}
		if _, err := in.Syscall(unix.SYS_MUNMAP, m.Start, m.End-m.Start); err != nil {
			return h, fmt.Errorf("helper: unmapping %#x-%#x %s: %w", m.Start, m.End, m.Path, err)
		}
	}
	return h, nil
}

// finishHelper checks that the image fits the helper (XSAVE size, vdso)
// and gives it the tracees' pidfd of the restorer.
func (r *restorer) finishHelper(h *bareHelper) error {
	pid, in := h.pid, h.in
	xs, err := ptrace.GetXState(pid)
	if err != nil {
		return fmt.Errorf("helper: reading XSAVE state: %w", err)
	}
	if r.tree.CPU.XStateSize != 0 && len(xs) != r.tree.CPU.XStateSize {
		return fmt.Errorf("the image's XSAVE area is %d bytes, this machine's is %d: %w", r.tree.CPU.XStateSize, len(xs), ErrMismatch)
	}
	if err := r.checkVdso(pid, h.maps); err != nil {
		return err
	}
	// The tracees' handle on the restorer, above every fd of the image.
	top := 3
	for _, p := range r.tree.Processes {
		for _, fd := range p.FDs {
			top = max(top, fd.Num+1)
		}
	}
	if lim, err := prlimitGet(pid, unix.RLIMIT_NOFILE); err == nil && lim.Cur <= uint64(top) && lim.Max > uint64(top) {
		_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim.Max, Max: lim.Max}, nil)
	}
	pfd, err := in.Syscall(unix.SYS_PIDFD_OPEN, uint64(os.Getpid()), 0)
	if err != nil {
		return fmt.Errorf("helper: pidfd_open: %w", err)
	}
	hi, err := in.Syscall(unix.SYS_FCNTL, pfd, unix.F_DUPFD, uint64(top))
	if err != nil {
		return fmt.Errorf("helper: moving pidfd above fd %d: %w", top, err)
	}
	if _, err := in.Syscall(unix.SYS_CLOSE, pfd); err != nil {
		return err
	}
	r.pidfd = int(hi)
	return nil
}

func prlimitGet(pid, res int) (unix.Rlimit, error) {
	var l unix.Rlimit
	err := unix.Prlimit(pid, res, nil, &l)
	return l, err
}

func readMaps(pid int) ([]procfs.MapEntry, error) {
	b, err := procfs.Read(pid, "maps")
	if err != nil {
		return nil, err
	}
	return procfs.ParseMaps(b)
}

type vdsoSet struct{ vvar, vclock, vdso image.Range }

func vdsoOf(maps []procfs.MapEntry) vdsoSet {
	var v vdsoSet
	for _, m := range maps {
		rg := image.Range{Addr: m.Start, Len: m.End - m.Start}
		switch m.Path {
		case "[vvar]":
			v.vvar = rg
		case "[vvar_vclock]":
			v.vclock = rg
		case "[vdso]":
			v.vdso = rg
		}
	}
	return v
}

// checkVdso refuses an image whose vdso is not this kernel's.
func (r *restorer) checkVdso(pid int, maps []procfs.MapEntry) error {
	cur := vdsoOf(maps)
	mem, err := ptrace.OpenMem(pid)
	if err != nil {
		return err
	}
	defer mem.Close()
	b := make([]byte, cur.vdso.Len)
	if err := mem.Read(cur.vdso.Addr, b); err != nil {
		return fmt.Errorf("reading this kernel's vdso: %w", err)
	}
	h := hashBytes(b)
	for _, p := range r.tree.Processes {
		v := p.Vdso
		if v == nil {
			continue
		}
		same := v.Vvar.Len == cur.vvar.Len && v.VvarVclock.Len == cur.vclock.Len && v.Vdso.Len == cur.vdso.Len &&
			v.Vdso.Addr-v.Vvar.Addr == cur.vdso.Addr-cur.vvar.Addr &&
			(v.VvarVclock.Len == 0 || v.VvarVclock.Addr-v.Vvar.Addr == cur.vclock.Addr-cur.vvar.Addr)
		if !same {
			return fmt.Errorf("process %d: the image's vvar/vdso layout does not fit this kernel's: %w", p.PID, ErrMismatch)
		}
		if v.Hash != h {
			return fmt.Errorf("process %d: the image was dumped with another vdso (another kernel build): %w", p.PID, ErrMismatch)
		}
	}
	return nil
}

// findFree returns the lowest page-aligned address from 4 GiB up where n
// bytes overlap none of used.
func findFree(used []image.Range, n uint64) (uint64, error) {
	sort.Slice(used, func(i, j int) bool { return used[i].Addr < used[j].Addr })
	addr := uint64(1 << 32)
	for _, u := range used {
		if u.Addr+u.Len <= addr {
			continue
		}
		if u.Addr >= addr+n {
			break
		}
		addr = (u.Addr + u.Len + image.PageSize - 1) &^ (image.PageSize - 1)
	}
	if addr+n > 0x7ffffffff000 {
		return 0, errors.New("no free address range for the restorer's scratch area")
	}
	return addr, nil
}

// create clones p (and, recursively, its children) from parent.
func (r *restorer) create(parent *ptrace.Injector, p *image.Process, isRoot bool) error {
	args := ptrace.CloneArgs{ExitSignal: uint64(unix.SIGCHLD), SetTID: r.scratch + offSetTID, SetTIDSize: 1}
	if isRoot && !r.opts.Detach {
		args.Flags = unix.CLONE_PARENT
		args.ExitSignal = 0 // the helper's exit signal (SIGCHLD) is inherited
	}
	if isRoot && r.tree.Container != nil {
		// PID 1 of a new PID namespace; set_tid[0] is its id there.
		args.Flags |= unix.CLONE_NEWPID
		if r.intoCgroup {
			args.Flags |= unix.CLONE_INTO_CGROUP
			args.Cgroup = uint64(r.cgfd)
		}
	}
	if isRoot && r.pre != nil {
		// The root takes over the helper's memory, staged pages included,
		// instead of a copy-on-write copy of it: no page table is copied,
		// and the helper's death below frees nothing.
		args.Flags |= unix.CLONE_VM
	}
	pid, err := r.clone(parent, &args, p.PID)
	if err != nil {
		return fmt.Errorf("creating process %d: %w", p.PID, err)
	}
	if isRoot {
		r.res.Root = pid
	}
	in, err := ptrace.NewInjector(pid, r.scratch+offSyscall)
	if err != nil {
		return err
	}
	if err := ptrace.SetSigmask(pid, ^uint64(0)); err != nil {
		return err
	}
	rp := &rproc{img: p, in: in, pid: pid}
	r.procs = append(r.procs, rp)
	r.byPID[p.PID] = rp
	if p.SID == p.PID {
		if _, err := in.Syscall(unix.SYS_SETSID); err != nil {
			return fmt.Errorf("process %d: setsid: %w", p.PID, err)
		}
		if err := r.attachCTTY(in, p); err != nil {
			return fmt.Errorf("process %d: controlling terminal: %w", p.PID, err)
		}
	} else if !isRoot {
		if par := r.tree.Process(p.PPID); par != nil && par.SID != p.SID {
			r.warn("process %d: session %d (its leader is not in the tree) cannot be recreated; it joins session %d", p.PID, p.SID, par.SID)
		}
	}
	if isRoot && r.tree.Container != nil {
		if err := r.mountProc(in); err != nil {
			return err
		}
	}
	for _, c := range p.Children {
		if err := r.create(in, r.tree.Process(c), false); err != nil {
			return err
		}
	}
	return nil
}

// clone injects clone3 with set_tid = id into parent and waits for the new
// task's first stop. It returns the new task's id as the restorer sees it,
// which is id except inside a container's PID namespace.
func (r *restorer) clone(parent *ptrace.Injector, args *ptrace.CloneArgs, id int) (int, error) {
	mem, err := ptrace.OpenMem(parent.TID)
	if err != nil {
		return 0, err
	}
	defer mem.Close()
	var tid [8]byte
	binary.LittleEndian.PutUint64(tid[:], uint64(id))
	if err := mem.Write(r.scratch+offSetTID, tid[:]); err != nil {
		return 0, err
	}
	if err := mem.Write(r.scratch+offClone, args.Bytes()); err != nil {
		return 0, err
	}
	parent.Forks = nil
	got, err := parent.Syscall(unix.SYS_CLONE3, r.scratch+offClone, 88)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("PID %d is taken%s: %w", id, holder(id), ErrPIDInUse)
		}
		return 0, err
	}
	host := int(got)
	if n := len(parent.Forks); n > 0 {
		host = parent.Forks[n-1] // PTRACE_GETEVENTMSG: in the tracer's PID namespace
	}
	if r.tree.Container == nil && host != id {
		return 0, fmt.Errorf("clone3 gave id %d, wanted %d", host, id)
	}
	if r.tree.Container != nil {
		if err := checkInnerID(host, id); err != nil {
			return 0, err
		}
	}
	for {
		ws, err := ptrace.Wait(host)
		if err != nil {
			return 0, err
		}
		if ws.Stopped() {
			break
		}
		if ws.Exited() || ws.Signaled() {
			return 0, fmt.Errorf("new task %d %s", id, ptrace.Stop(ws))
		}
	}
	return host, nil
}

// holder describes the task that holds PID id, for an error message.
func holder(id int) string {
	if b, err := procfs.Read(id, "stat"); err == nil {
		if st, err := procfs.ParseStat(b); err == nil {
			return fmt.Sprintf(" by %s (state %c, parent %d)", st.Comm, st.State, st.PPID)
		}
	}
	if st, ok := groupsInUse(map[int]bool{id: true})[id]; ok {
		return fmt.Sprintf(" as the process group or session of process %d (%s, state %c)", st.PID, st.Comm, st.State)
	}
	return ""
}
