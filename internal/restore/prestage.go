package restore

import (
	"fmt"
	"math/bits"
	"sort"
	"sync"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Prestage builds the memory of a process before its image is known (live
// migration): the restore helper is started at once, and the pages that
// arrive are written into anonymous mappings of the helper at their final
// addresses. When the image is complete, Restore clones the root from
// that helper as usual, so the root inherits the staged memory (it is
// cloned with CLONE_VM: it takes over the helper's address space, no page
// or page table is copied), keeps the staged mappings the image has with
// the same bounds, and writes only the pages that are not in place. So
// the freeze of a migration does not pay for writing the whole memory.
//
// Only a tree of one process can use it (children would inherit the
// mappings too); Restore falls back to the normal path, and kills the
// prestaged helper, whenever the image does not fit.
type Prestage struct {
	pid int // PID of the process (in the image) the memory is for

	mu      sync.Mutex
	tr      *ptrace.Tracer
	h       *bareHelper
	mem     *ptrace.Mem
	regions []*stagedRegion // sorted, disjoint
	used    bool            // handed to a restore
	err     error           // the first failure: nothing more is staged
}

type stagedRegion struct {
	start, end uint64
	in         []uint64 // bitmap: page holds the newest content received
	claimed    bool     // the image has a mapping with these bounds
}

func (g *stagedRegion) page(a uint64) uint64 { return (a - g.start) / image.PageSize }
func (g *stagedRegion) has(a uint64) bool {
	i := g.page(a)
	return g.in[i/64]&(1<<(i%64)) != 0
}
func (g *stagedRegion) set(a uint64, on bool) {
	i := g.page(a)
	if on {
		g.in[i/64] |= 1 << (i % 64)
	} else {
		g.in[i/64] &^= 1 << (i % 64)
	}
}

// StartPrestage starts a helper (path "" = this executable) for the
// memory of process pid.
func StartPrestage(path string, pid int) (*Prestage, error) {
	if path == "" {
		path = "/proc/self/exe"
	}
	ps := &Prestage{pid: pid, tr: ptrace.NewTracer()}
	err := ps.tr.Do(func() error {
		h, err := spawnHelper(path, nil)
		ps.h = h
		if err != nil {
			return err
		}
		ps.mem, err = ptrace.OpenMem(h.pid)
		return err
	})
	if err != nil {
		ps.Close()
		return nil, fmt.Errorf("starting the prestage helper: %w", err)
	}
	return ps, nil
}

// Close kills the helper unless a restore took it over.
func (ps *Prestage) Close() {
	if ps == nil {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.used || ps.tr == nil {
		return
	}
	ps.release()
}

func (ps *Prestage) release() {
	if ps.mem != nil {
		ps.mem.Close()
		ps.mem = nil
	}
	if ps.h != nil {
		pid := ps.h.pid
		_ = ps.tr.Do(func() error {
			_ = unix.Kill(pid, unix.SIGKILL)
			for {
				ws, err := ptrace.Wait(pid)
				if err != nil || ws.Exited() || ws.Signaled() {
					return nil
				}
			}
		})
		ps.h = nil
	}
	ps.tr.Close()
	ps.tr = nil
}

// Err is why staging stopped (nil while it works).
func (ps *Prestage) Err() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.err
}

// Map makes the staged regions exactly rs (the private anonymous mappings
// of the process now, sorted): regions that are gone or changed bounds are
// unmapped (their pages are no longer in place), new ones mapped.
func (ps *Prestage) Map(rs []image.Range) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.err != nil || ps.used {
		return
	}
	want := map[image.Range]bool{}
	for _, r := range rs {
		want[r] = true
	}
	var keep []*stagedRegion
	err := ps.tr.Do(func() error {
		for _, g := range ps.regions {
			if want[image.Range{Addr: g.start, Len: g.end - g.start}] {
				keep = append(keep, g)
				delete(want, image.Range{Addr: g.start, Len: g.end - g.start})
				continue
			}
			if _, err := ps.h.in.Syscall(unix.SYS_MUNMAP, g.start, g.end-g.start); err != nil {
				return fmt.Errorf("unmapping staged %#x-%#x: %w", g.start, g.end, err)
			}
		}
		for r := range want {
			if overlaps(keep, r) {
				continue
			}
			_, err := ps.h.in.Syscall(unix.SYS_MMAP, r.Addr, r.Len, unix.PROT_READ|unix.PROT_WRITE,
				unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
			if err != nil {
				continue // taken by the helper's scratch or vdso: written at restore
			}
			keep = append(keep, &stagedRegion{start: r.Addr, end: r.Addr + r.Len, in: make([]uint64, (r.Len/image.PageSize+63)/64)})
		}
		return nil
	})
	sort.Slice(keep, func(i, j int) bool { return keep[i].start < keep[j].start })
	ps.regions = keep
	if err != nil {
		ps.err = err
	}
}

func overlaps(gs []*stagedRegion, r image.Range) bool {
	for _, g := range gs {
		if g.start < r.Addr+r.Len && r.Addr < g.end {
			return true
		}
	}
	return false
}

// Write stores pages of the process at addr: the parts inside staged
// regions go into the helper (and are marked in place), the rest is left
// to the restore.
func (ps *Prestage) Write(addr uint64, b []byte) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.err != nil || ps.used {
		return
	}
	end := addr + uint64(len(b))
	for _, g := range ps.regions {
		lo, hi := max(addr, g.start), min(end, g.end)
		if lo >= hi {
			continue
		}
		err := ps.mem.WriteV(lo, [][]byte{b[lo-addr : hi-addr]})
		for a := lo; a < hi; a += image.PageSize {
			g.set(a, err == nil)
		}
	}
}

// adopt hands the helper to a restore of tree, or says why it cannot.
func (ps *Prestage) adopt(tree *image.Tree) (*ptrace.Tracer, *bareHelper, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch {
	case ps.tr == nil || ps.used:
		return nil, nil, fmt.Errorf("the prestage helper is gone")
	case ps.err != nil:
		return nil, nil, ps.err
	case len(tree.Processes) != 1 || tree.Container != nil:
		return nil, nil, fmt.Errorf("%d processes (only one is prestaged)", len(tree.Processes))
	case tree.Root != ps.pid:
		return nil, nil, fmt.Errorf("prestaged process %d, image of %d", ps.pid, tree.Root)
	}
	for _, m := range tree.Processes[0].Mappings {
		if m.Start < ps.h.scratch+scratchLen && ps.h.scratch < m.End {
			return nil, nil, fmt.Errorf("the image maps %#x-%#x over the helper's scratch area", m.Start, m.End)
		}
	}
	for _, g := range ps.regions {
		g.claimed = false
	}
	for _, m := range tree.Processes[0].Mappings {
		if m.Shared || (m.Kind != image.KindAnon && m.Kind != image.KindHeap) {
			continue
		}
		for _, g := range ps.regions {
			if g.start == m.Start && g.end == m.End {
				g.claimed = true
			}
		}
	}
	ps.used = true
	if ps.mem != nil {
		ps.mem.Close()
		ps.mem = nil
	}
	return ps.tr, ps.h, nil
}

// region returns the claimed staged region that is exactly m.
func (ps *Prestage) region(m *image.Mapping) *stagedRegion {
	if ps == nil {
		return nil
	}
	for _, g := range ps.regions {
		if g.claimed && g.start == m.Start && g.end == m.End {
			return g
		}
	}
	return nil
}

// unmapUnclaimed removes from the root the staged regions the image has
// no mapping for (it inherited them from the helper).
func (ps *Prestage) unmapUnclaimed(in *ptrace.Injector) error {
	for _, g := range ps.regions {
		if g.claimed {
			continue
		}
		if _, err := in.Syscall(unix.SYS_MUNMAP, g.start, g.end-g.start); err != nil {
			return fmt.Errorf("unmapping staged %#x-%#x: %w", g.start, g.end, err)
		}
	}
	return nil
}

// split divides the image's saved ranges into those still to write and,
// per claimed region, drops the staged pages the image does not have
// (MADV_DONTNEED: they read as zero again, as pages never saved do).
func (ps *Prestage) split(ranges []image.Range) (write []image.Range, drop []image.Range) {
	wanted := func(a uint64) bool {
		i := sort.Search(len(ranges), func(k int) bool { return ranges[k].Addr+ranges[k].Len > a })
		return i < len(ranges) && ranges[i].Addr <= a
	}
	add := func(rs []image.Range, a uint64) []image.Range {
		if k := len(rs) - 1; k >= 0 && rs[k].Addr+rs[k].Len == a {
			rs[k].Len += image.PageSize
			return rs
		}
		return append(rs, image.Range{Addr: a, Len: image.PageSize})
	}
	for _, rg := range ranges {
		for a := rg.Addr; a < rg.Addr+rg.Len; a += image.PageSize {
			g := ps.claimedAt(a)
			if g == nil || !g.has(a) {
				write = add(write, a)
			}
		}
	}
	for _, g := range ps.regions {
		if !g.claimed {
			continue
		}
		for i, w := range g.in {
			for w != 0 {
				b := uint64(bits.TrailingZeros64(w))
				w &^= 1 << b
				a := g.start + (uint64(i)*64+b)*image.PageSize
				if !wanted(a) {
					drop = add(drop, a)
				}
			}
		}
	}
	return write, drop
}

func (ps *Prestage) claimedAt(a uint64) *stagedRegion {
	i := sort.Search(len(ps.regions), func(k int) bool { return ps.regions[k].end > a })
	if i < len(ps.regions) && ps.regions[i].start <= a && ps.regions[i].claimed {
		return ps.regions[i]
	}
	return nil
}

// writePrestaged writes the root's pages that are not in place and drops
// the staged pages the image does not have.
func (r *restorer) writePrestaged(p *rproc, ranges []image.Range) error {
	write, drop := r.pre.split(ranges)
	for _, d := range drop {
		if _, err := p.in.Syscall(unix.SYS_MADVISE, d.Addr, d.Len, unix.MADV_DONTNEED); err != nil {
			return fmt.Errorf("dropping staged pages %#x-%#x: %w", d.Addr, d.Addr+d.Len, err)
		}
	}
	return r.writeRanges(p, write)
}

// mapPrestaged keeps a staged region as the mapping m (ok): only its
// protection changes (staged regions are read-write).
func (r *restorer) mapPrestaged(p *rproc, m *image.Mapping) (ok bool, err error) {
	if r.pre.region(m) == nil {
		return false, nil
	}
	if prot := protOf(m); prot != unix.PROT_READ|unix.PROT_WRITE {
		if _, err := p.in.Syscall(unix.SYS_MPROTECT, m.Start, m.Size(), prot); err != nil {
			return true, err
		}
	}
	return true, nil
}

// protOf is the mapping's protection as mmap's PROT_ bits.
func protOf(m *image.Mapping) uint64 {
	prot := uint64(0)
	if m.Prot&image.ProtRead != 0 {
		prot |= unix.PROT_READ
	}
	if m.Prot&image.ProtWrite != 0 {
		prot |= unix.PROT_WRITE
	}
	if m.Prot&image.ProtExec != 0 {
		prot |= unix.PROT_EXEC
	}
	return prot
}
