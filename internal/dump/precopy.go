package dump

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/ckpt/ckpt/internal/dirty"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
)

// ParentReuser is implemented by page writers whose image has a parent
// (the pre-copy image): ReusePages declares [addr, addr+n) of pid's memory
// unchanged since the parent without passing the data. Calls interleave
// with WritePages in ascending address order.
type ParentReuser interface {
	ReusePages(pid int, addr, n uint64) error
}

// PreCopy copies the memory of a running tree before the tree is frozen, so
// that the frozen dump reads only the pages written since. Start it with
// StartPreCopy, copy with Copy (or CopyRound), pass it to Checkpoint in
// Options.PreCopy (with a page writer whose parent is the copy), then
// Close it. Kept between checkpoints (Options.KeepTracking; NewTracking
// for a first dump without pre-copy) it describes the last checkpoint:
// CollectWritten and CopyTracked then pre-copy only what was written since.
type PreCopy struct {
	procs map[int]*preProc
	inner map[int]int // a container's PIDs inside its namespace (StartContainerPreCopy)
	// ArmStop is how long the tree was stopped to create the trackers.
	ArmStop time.Duration

	spareHuge bool // see SpareHugePages
}

// SpareHugePages makes the trackers leave transparent huge pages alone
// (dirty.Tracker.SpareHugePages): mappings with huge pages are read whole
// by every dump instead of tracked. For trackers kept between checkpoints
// (KeepTracking); call it before Copy.
func (pc *PreCopy) SpareHugePages() {
	pc.spareHuge = true
	for _, p := range pc.procs {
		p.tk.SpareHugePages = true
	}
}

type preProc struct {
	tk     *dirty.Tracker
	copied []dirty.Range // ranges stored in the pre-copy image
	// collected: the tracker was collected (and so re-protected) during
	// the current freeze (Options.KeepTracking).
	collected bool
	// pending: written pages collected while the tree ran
	// (CollectWritten) and not copied since; the frozen pass reads them.
	pending []dirty.Range
}

// NewTracking returns a PreCopy that tracks nothing yet, for a first dump
// with Options.KeepTracking: that dump reads every page and leaves a
// tracker in each process, sparing huge pages (SpareHugePages).
func NewTracking() *PreCopy { return &PreCopy{procs: map[int]*preProc{}, spareHuge: true} }

// StartPreCopy stops the tree rooted at pid for the time it takes to
// create a write tracker in each process (one injected userfaultfd and
// close each), then lets it run again. Processes whose writes cannot be
// tracked are read whole by the frozen dump; the error is returned only
// when none can be tracked.
func StartPreCopy(ctx context.Context, pid int) (*PreCopy, error) {
	return startPreCopy(ctx, pid, false)
}

func startPreCopy(ctx context.Context, pid int, pidNS bool) (*PreCopy, error) {
	if err := checkTarget(pid, pidNS); err != nil {
		return nil, err
	}
	pc := &PreCopy{procs: map[int]*preProc{}}
	h := &Handle{tr: ptrace.NewTracer()}
	t0 := time.Now()
	if err := h.freezeTree(ctx, pid); err != nil {
		h.release(false)
		return nil, err
	}
	if pidNS {
		var err error
		if pc.inner, err = h.innerPIDs(); err != nil {
			h.release(false)
			return nil, err
		}
	}
	var firstErr error
	for _, p := range h.procs {
		if p.zombie {
			continue
		}
		tk, err := h.armTracker(p)
		if err == nil {
			pc.procs[p.pid] = &preProc{tk: tk}
			continue
		}
		if !errors.Is(err, dirty.ErrUnavailable) {
			h.release(false)
			pc.Close()
			return nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	err := h.release(false)
	pc.ArmStop = time.Since(t0)
	if err != nil {
		pc.Close()
		return nil, err
	}
	if len(pc.procs) == 0 {
		return nil, firstErr
	}
	return pc, nil
}

// armTracker creates a write tracker in p, which h holds frozen.
func (h *Handle) armTracker(p *proc) (*dirty.Tracker, error) {
	var tk *dirty.Tracker
	err := h.tr.Do(func() error {
		sys, err := vdsoSyscall(p.pid)
		if err != nil {
			return fmt.Errorf("%w: %v", dirty.ErrUnavailable, err)
		}
		in := &ptrace.Injector{TID: p.pid, SysAddr: sys, Saved: p.threads[0].regs}
		t, err := dirty.Start(p.pid, in)
		if rerr := in.Restore(); rerr != nil && err == nil {
			t.Close()
			err = rerr
		}
		tk = t
		return err
	})
	return tk, err
}

// vdsoSyscall finds a syscall instruction in pid's vdso.
func vdsoSyscall(pid int) (uint64, error) {
	b, err := procfs.Read(pid, "maps")
	if err != nil {
		return 0, err
	}
	maps, err := procfs.ParseMaps(b)
	if err != nil {
		return 0, err
	}
	mem, err := ptrace.OpenMem(pid)
	if err != nil {
		return 0, err
	}
	defer mem.Close()
	var ms []*image.Mapping
	for _, e := range maps {
		if e.Path == "[vdso]" {
			ms = append(ms, &image.Mapping{Start: e.Start, End: e.End, Kind: image.KindVdso})
		}
	}
	return findSyscall(ms, mem)
}

// Close stops tracking.
func (pc *PreCopy) Close() {
	if pc == nil {
		return
	}
	for _, p := range pc.procs {
		p.tk.Close()
	}
}

// Copy arms the trackers and copies every page the dump would save from
// the running processes into pw, which must not be the writer of the final
// image. Pages that cannot be read (unmapped meanwhile) are left to the
// frozen dump. It returns the bytes copied. It is the first CopyRound.
func (pc *PreCopy) Copy(ctx context.Context, pw image.PageWriter) (uint64, error) {
	rd, err := pc.CopyRound(ctx, pw)
	return rd.Copied, err
}

// walkRunning walks the pages of the running process pid that a dump
// would save (walkPages over its tracked mappings), with its memory open.
func walkRunning(pid int, run func(mem *ptrace.Mem) func(m *image.Mapping, addr uint64, n int) error) error {
	ms, err := trackedMappings(pid)
	if err != nil {
		return err
	}
	mem, err := ptrace.OpenMem(pid)
	if err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	defer mem.Close()
	return walkPages(pid, ms, nil, run(mem))
}

// copier copies runs of wanted pages of a running process, tolerating
// pages that went away.
type copier struct {
	pid    int
	pw     image.PageWriter
	within *dirty.Cursor
	copied []dirty.Range
	buf    []byte
}

func (c *copier) run(mem *ptrace.Mem) func(m *image.Mapping, addr uint64, n int) error {
	return func(m *image.Mapping, addr uint64, n int) error {
		for i := 0; i < n; {
			a := addr + uint64(i)*image.PageSize
			if !c.within.Contains(a) {
				i++
				continue
			}
			j := i + 1
			for j < n && c.within.Contains(addr+uint64(j)*image.PageSize) {
				j++
			}
			if err := c.read(mem, a, j-i); err != nil {
				return err
			}
			i = j
		}
		return nil
	}
}

// read copies n pages at a of the running process into the page writer,
// unless they went away meanwhile.
func (c *copier) read(mem *ptrace.Mem, a uint64, n int) error {
	if c.buf == nil {
		c.buf = make([]byte, batch)
	}
	b := c.buf[:n*image.PageSize]
	if err := mem.Read(a, b); err == nil {
		if err := c.pw.WritePages(c.pid, a, b); err != nil {
			return fmt.Errorf("process %d: saving pages at %#x: %w", c.pid, a, err)
		}
		c.copied = append(c.copied, dirty.Range{Addr: a, Len: uint64(len(b))})
	} else if gone(c.pid) {
		return fmt.Errorf("process %d exited during the pre-copy", c.pid)
	}
	return nil
}

// frozenPass is what dumpPages needs from a pre-copy for one process.
type frozenPass struct {
	reuse  ParentReuser
	copied *dirty.Cursor
	dirty  *dirty.Cursor
}

// forProcess collects pid's written pages (the tree is frozen) and returns
// how the frozen dump may reuse the pre-copy, or nil when it cannot.
func (pc *PreCopy) forProcess(pid int, pw image.PageWriter) (*frozenPass, error) {
	if pc == nil {
		return nil, nil
	}
	p := pc.procs[pid]
	if p != nil && !p.tk.Alive() {
		// The process executed another program (or this PID is another
		// process): its pages are all new.
		p.tk.Close()
		delete(pc.procs, pid)
		p = nil
	}
	r, ok := pw.(ParentReuser)
	if p == nil || p.copied == nil || !ok {
		return nil, nil
	}
	d, err := p.tk.Collect()
	if err != nil {
		return nil, fmt.Errorf("process %d: collecting written pages: %w", pid, err)
	}
	p.collected = true
	if p.pending != nil {
		d, p.pending = unionRanges(d, p.pending), nil
	}
	return &frozenPass{reuse: r, copied: dirty.NewCursor(p.copied), dirty: dirty.NewCursor(d)}, nil
}

// CollectWritten collects, while the tree runs, the pages each tracked
// process wrote since the checkpoint the PreCopy describes (kept trackers,
// Options.KeepTracking) and returns how much of that checkpoint's memory
// was overwritten. The pages stay pending: the frozen pass reads them
// unless CopyTracked copies them first. A process whose tracker died
// (exec) is dropped: the frozen pass reads it whole.
func (pc *PreCopy) CollectWritten() (uint64, error) {
	var over uint64
	for pid, p := range pc.procs {
		if !p.tk.Alive() {
			p.tk.Close()
			delete(pc.procs, pid)
			continue
		}
		if p.copied == nil {
			continue
		}
		if pc.spareHuge {
			// While the tree runs: the frozen pass does not read smaps.
			if err := p.tk.FindHuge(); err != nil {
				return over, err
			}
		}
		d, err := p.tk.Collect()
		if err != nil {
			return over, fmt.Errorf("process %d: collecting written pages: %w", pid, err)
		}
		p.pending = unionRanges(p.pending, d)
		over += dirty.Bytes(intersectRanges(p.copied, d))
	}
	return over, nil
}

// CopyTracked copies the pending pages (CollectWritten) of the running
// tree into pw, whose parent must be the checkpoint the PreCopy describes,
// and declares that checkpoint's other pages unchanged: pw's image is then
// a whole pre-copy, which the PreCopy describes from here on (pass pw's
// checkpoint as the frozen dump's parent). Pages that cannot be read
// (unmapped meanwhile) are left to the frozen pass. It returns the bytes
// copied.
func (pc *PreCopy) CopyTracked(ctx context.Context, pw image.PageWriter) (uint64, error) {
	pw = wrapInner(pw, pc.inner)
	r, ok := pw.(ParentReuser)
	if !ok {
		return 0, errors.New("dump: CopyTracked needs a page writer with a parent")
	}
	pids := pc.sortedPIDs()
	var total uint64
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		p := pc.procs[pid]
		if p.copied == nil {
			continue
		}
		fp := &frozenPass{reuse: r, copied: dirty.NewCursor(p.copied), dirty: dirty.NewCursor(p.pending)}
		cp := &copier{pid: pid, pw: pw}
		var saved []dirty.Range
		err := walkRunning(pid, func(mem *ptrace.Mem) func(m *image.Mapping, addr uint64, n int) error {
			return func(m *image.Mapping, addr uint64, n int) error {
				return fp.runs(m, addr, n, func(a, l uint64) error {
					if err := r.ReusePages(pid, a, l); err != nil {
						return fmt.Errorf("process %d: reusing pages at %#x: %w", pid, a, err)
					}
					saved = dirty.AppendRange(saved, dirty.Range{Addr: a, Len: l})
					return nil
				}, func(a uint64, n int) error {
					before := len(cp.copied)
					if err := cp.read(mem, a, n); err != nil {
						return err
					}
					for _, c := range cp.copied[before:] {
						saved = dirty.AppendRange(saved, c)
					}
					return nil
				})
			}
		})
		if err != nil {
			return total, err
		}
		// What was pending and got copied is in the new image; what
		// could not be read stays pending for the frozen pass.
		p.pending = subtractRanges(p.pending, cp.copied)
		if saved == nil {
			saved = []dirty.Range{}
		}
		p.copied = saved
		total += dirty.Bytes(cp.copied)
	}
	return total, nil
}

// retrack makes p's tracker describe the image being written, whose
// pages of p are saved (Options.KeepTracking): a process without a tracker
// gets one, and every tracker is re-protected during this freeze, so that
// what it reports next is what was written since.
func (pc *PreCopy) retrack(h *Handle, p *proc, saved []dirty.Range) error {
	pp := pc.procs[p.pid]
	if pp == nil {
		tk, err := h.armTracker(p)
		if errors.Is(err, dirty.ErrUnavailable) {
			return nil // read whole by every dump
		}
		if err != nil {
			return err
		}
		tk.SpareHugePages = pc.spareHuge
		pp = &preProc{tk: tk}
		pc.procs[p.pid] = pp
	}
	if !pp.collected {
		// The first Collect registers and protects everything.
		if _, err := pp.tk.Collect(); err != nil {
			return fmt.Errorf("process %d: arming the write tracker: %w", p.pid, err)
		}
	}
	if saved == nil {
		saved = []dirty.Range{} // tracked, nothing saved: forProcess needs non-nil
	}
	pp.copied, pp.collected = saved, false
	return nil
}

// keepOnly stops tracking the processes that are not (or no longer live)
// in the tree.
func (pc *PreCopy) keepOnly(procs []*proc) {
	live := map[int]bool{}
	for _, p := range procs {
		if !p.zombie {
			live[p.pid] = true
		}
	}
	for pid, p := range pc.procs {
		if !live[pid] {
			p.tk.Close()
			delete(pc.procs, pid)
		}
	}
}

// reusable says whether the page at a of mapping m is in the pre-copy
// image and was not written since. Addresses must ascend. Pages of a
// private mapping of a deleted file never are: those not copied on write
// show the file, which can change (pwrite, a shared mapping) without a
// write to the mapping that the tracker would see.
func (f *frozenPass) reusable(m *image.Mapping, a uint64) bool {
	if m.Kind == image.KindDeleted {
		return false
	}
	d := f.dirty.Contains(a)
	return f.copied.Contains(a) && !d
}

// runs splits n pages of m at addr into runs the image may take from its
// parent (reuse, with the run's address and length) and runs to read
// (read, with its address and page count), in ascending order.
func (f *frozenPass) runs(m *image.Mapping, addr uint64, n int, reuse func(a, l uint64) error, read func(a uint64, n int) error) error {
	for i := 0; i < n; {
		a := addr + uint64(i)*image.PageSize
		r := f.reusable(m, a)
		j := i + 1
		for j < n && f.reusable(m, addr+uint64(j)*image.PageSize) == r {
			j++
		}
		var err error
		if r {
			err = reuse(a, uint64(j-i)*image.PageSize)
		} else {
			err = read(a, j-i)
		}
		if err != nil {
			return err
		}
		i = j
	}
	return nil
}

// sortedPIDs lists the tracked processes in ascending order.
func (pc *PreCopy) sortedPIDs() []int {
	pids := make([]int, 0, len(pc.procs))
	for pid := range pc.procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// swapType is the swap type of a swapped pagemap entry (bits 0-4, shown to
// root only); uffdMarkerType is the kernel's SWP_PTE_MARKER, the type of
// the markers a userfaultfd write tracker (WP_UNPOPULATED) puts on pages
// never populated.
const (
	swapTypeMask   = 0x1f
	uffdMarkerType = 0x1f
	pmUffdWP       = 1 << 57
)

// uffdMarker reports a swapped pagemap entry that is a write tracker's
// marker, not a page in swap.
func uffdMarker(v uint64) bool {
	return v&pmSwapped != 0 && v&pmUffdWP != 0 && v&swapTypeMask == uffdMarkerType
}

// pagemapRuns reads the pagemap entries of [start, end) of m in process
// pid (a window of batch at a time, into *ent) and calls run for each run
// of pages whose entry want accepts.
func pagemapRuns(pid int, pm *os.File, m *image.Mapping, start, end uint64, ent *[]byte, want func(v uint64) bool, run func(m *image.Mapping, addr uint64, n int) error) error {
	if *ent == nil {
		*ent = make([]byte, 8*(batch/image.PageSize))
	}
	for win := start; win < end; win += batch {
		n := int((min(win+batch, end) - win) / image.PageSize)
		e := (*ent)[:8*n]
		if _, err := pm.ReadAt(e, int64(win/image.PageSize*8)); err != nil {
			return fmt.Errorf("process %d: reading pagemap at %#x: %w", pid, win, err)
		}
		wanted := func(i int) bool { return want(binary.LittleEndian.Uint64(e[8*i:])) }
		for i := 0; i < n; {
			if !wanted(i) {
				i++
				continue
			}
			j := i + 1
			for j < n && wanted(j) {
				j++
			}
			if err := run(m, win+uint64(i)*image.PageSize, j-i); err != nil {
				return err
			}
			i = j
		}
	}
	return nil
}

// walkPages calls run for each run of pages the dump saves, per window of
// each mapping, in ascending order (see dumpPages for which pages).
func walkPages(pid int, ms []*image.Mapping, resident map[uint64]uint64, run func(m *image.Mapping, addr uint64, n int) error) error {
	pm, err := os.Open(procfs.Path(pid, "pagemap"))
	if err != nil {
		return err
	}
	defer pm.Close()
	scan := pageScanWorks()
	var vec []pageRegion
	var ent []byte
	if scan {
		vec = make([]pageRegion, 512)
	}
	for _, m := range ms {
		switch m.Kind {
		case image.KindVvar, image.KindVvarVclock, image.KindVdso, image.KindVsyscall:
			continue
		}
		if m.Shared {
			continue // contents live in the file
		}
		if r, known := resident[m.Start]; known && r == 0 && m.Kind != image.KindDeleted {
			continue
		}
		if scan && m.Kind != image.KindDeleted {
			err := scanPages(pm, m.Start, m.End, vec, func(start, end, cats uint64) error {
				if cats&pageIsSwapped == 0 && cats&pageIsFile != 0 && m.Kind == image.KindFile {
					return nil // a clean page of the file
				}
				if cats&pageIsPresent == 0 {
					// Swapped out, or only a write tracker's marker on a
					// page never populated: those hold nothing.
					return pagemapRuns(pid, pm, m, start, end, &ent, func(v uint64) bool { return !uffdMarker(v) }, run)
				}
				for a := start; a < end; a += batch {
					n := int((min(a+batch, end) - a) / image.PageSize)
					if err := run(m, a, n); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("process %d: scanning pages of %#x-%#x: %w", pid, m.Start, m.End, err)
			}
			continue
		}
		want := func(v uint64) bool {
			if m.Kind == image.KindDeleted {
				return true
			}
			if v&pmSwapped != 0 {
				return !uffdMarker(v)
			}
			return v&pmPresent != 0 && (v&pmFile == 0 || m.Kind != image.KindFile)
		}
		if err := pagemapRuns(pid, pm, m, m.Start, m.End, &ent, want, run); err != nil {
			return err
		}
	}
	return nil
}
