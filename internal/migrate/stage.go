package migrate

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/ckpt/ckpt/internal/image"
)

// slabSize is the unit in which staged pages are allocated: pages that
// arrive in address order lie next to each other, so the restorer writes
// long runs with few iovecs.
const slabSize = 16 << 20

// Stage holds the pages of a migration as they arrive: the newest copy of
// every page sent, and, once the final pass is over, which of them make up
// the image. It is the image.PageReader of the final restore.
type Stage struct {
	pages map[int]map[uint64][]byte // pid -> page address -> 4 KiB slot
	final map[int][]image.Range     // pid -> the image's extents (sorted by seal)
	slab  []byte
	bytes uint64 // staged (distinct pages)
}

// NewStage returns an empty stage.
func NewStage() *Stage {
	return &Stage{pages: map[int]map[uint64][]byte{}, final: map[int][]image.Range{}}
}

func (s *Stage) slot(pid int, addr uint64) []byte {
	m := s.pages[pid]
	if m == nil {
		m = map[uint64][]byte{}
		s.pages[pid] = m
	}
	if b, ok := m[addr]; ok {
		return b
	}
	if len(s.slab) == 0 {
		s.slab = make([]byte, slabSize)
	}
	// The slot keeps the slab's capacity so that PageSegments can tell
	// whether the next page lies right after it.
	b := s.slab[:image.PageSize]
	s.slab = s.slab[image.PageSize:]
	m[addr] = b
	s.bytes += image.PageSize
	return b
}

// put stores pages (pre-copy or final); final marks them part of the image.
func (s *Stage) put(pid int, addr uint64, data []byte, final bool) {
	for off := 0; off < len(data); off += image.PageSize {
		a := addr + uint64(off)
		copy(s.slot(pid, a), data[off:off+image.PageSize])
	}
	if final {
		s.addFinal(pid, addr, uint64(len(data)))
	}
}

func (s *Stage) addFinal(pid int, addr, n uint64) {
	rs := s.final[pid]
	if k := len(rs) - 1; k >= 0 && rs[k].Addr+rs[k].Len == addr {
		rs[k].Len += n
		return
	}
	s.final[pid] = append(rs, image.Range{Addr: addr, Len: n})
}

// reuse marks staged pages part of the image. That they were staged is
// checked when they are read (a page that is not fails the restore):
// checking a GiB of pages here, page by page, would lengthen the freeze.
func (s *Stage) reuse(pid int, addr, n uint64) {
	s.addFinal(pid, addr, n)
}

// seal sorts the image's extents (the dumper sends them in ascending
// order, so usually there is nothing to do) and checks that no page came
// twice. Staged pages the image does not use stay until the stage is
// dropped: freeing them one by one would cost more, inside the freeze,
// than it saves.
func (s *Stage) seal() error {
	for pid, rs := range s.final {
		if !slices.IsSortedFunc(rs, func(a, b image.Range) int { return cmp.Compare(a.Addr, b.Addr) }) {
			slices.SortFunc(rs, func(a, b image.Range) int { return cmp.Compare(a.Addr, b.Addr) })
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].Addr < rs[i-1].Addr+rs[i-1].Len {
				return fmt.Errorf("%w: process %d: page %#x sent twice in the final pass", ErrStream, pid, rs[i].Addr)
			}
		}
	}
	return nil
}

// ImageBytes is the memory of the image (after seal).
func (s *Stage) ImageBytes() uint64 {
	var n uint64
	for _, rs := range s.final {
		for _, r := range rs {
			n += r.Len
		}
	}
	return n
}

// Bytes is the memory staged so far (distinct pages).
func (s *Stage) Bytes() uint64 { return s.bytes }

// Ranges implements image.PageReader (after seal).
func (s *Stage) Ranges(pid int) ([]image.Range, error) {
	var out []image.Range
	for _, r := range s.final[pid] {
		if k := len(out) - 1; k >= 0 && out[k].Addr+out[k].Len == r.Addr {
			out[k].Len += r.Len
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// ReadPages implements image.PageReader.
func (s *Stage) ReadPages(pid int, addr uint64, b []byte) error {
	m := s.pages[pid]
	for off := 0; off < len(b); off += image.PageSize {
		p, ok := m[addr+uint64(off)]
		if !ok {
			return fmt.Errorf("process %d: page %#x not in the migration stream", pid, addr+uint64(off))
		}
		copy(b[off:], p)
	}
	return nil
}

// PageSegments hands out the staged pages of [addr, addr+n) without a copy,
// joining pages that lie next to each other in a slab (the restorer's
// zero-copy path).
func (s *Stage) PageSegments(pid int, addr, n uint64, fn func(addr uint64, b []byte) error) error {
	m := s.pages[pid]
	var run []byte
	var at uint64
	for a := addr; a < addr+n; a += image.PageSize {
		p, ok := m[a]
		if !ok {
			return fmt.Errorf("process %d: page %#x not in the migration stream", pid, a)
		}
		if len(run) > 0 && at+uint64(len(run)) == a && cap(run) > len(run) && &run[:len(run)+1][len(run)] == &p[0] {
			run = run[:len(run)+image.PageSize]
			continue
		}
		if len(run) > 0 {
			if err := fn(at, run); err != nil {
				return err
			}
		}
		run, at = p, a
	}
	if len(run) > 0 {
		return fn(at, run)
	}
	return nil
}
