package migrate

import (
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
	final map[int][]uint64          // pid -> sorted page addresses of the image
	slab  []byte
	bytes uint64 // staged (distinct pages)
}

// NewStage returns an empty stage.
func NewStage() *Stage {
	return &Stage{pages: map[int]map[uint64][]byte{}, final: map[int][]uint64{}}
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
		if final {
			s.final[pid] = append(s.final[pid], a)
		}
	}
}

// reuse marks staged pages part of the image; every page must be staged.
func (s *Stage) reuse(pid int, addr, n uint64) error {
	m := s.pages[pid]
	for a := addr; a < addr+n; a += image.PageSize {
		if _, ok := m[a]; !ok {
			return fmt.Errorf("%w: process %d: page %#x declared unchanged was never sent", ErrStream, pid, a)
		}
		s.final[pid] = append(s.final[pid], a)
	}
	return nil
}

// seal sorts the image's pages and drops the staged pages it does not use.
func (s *Stage) seal() error {
	for pid, as := range s.final {
		slices.Sort(as)
		for i := 1; i < len(as); i++ {
			if as[i] == as[i-1] {
				return fmt.Errorf("%w: process %d: page %#x sent twice in the final pass", ErrStream, pid, as[i])
			}
		}
	}
	for pid, m := range s.pages {
		keep := map[uint64]bool{}
		for _, a := range s.final[pid] {
			keep[a] = true
		}
		for a := range m {
			if !keep[a] {
				delete(m, a)
			}
		}
	}
	return nil
}

// Bytes is the memory staged so far (distinct pages).
func (s *Stage) Bytes() uint64 { return s.bytes }

// Ranges implements image.PageReader (after seal).
func (s *Stage) Ranges(pid int) ([]image.Range, error) {
	var out []image.Range
	for _, a := range s.final[pid] {
		if k := len(out) - 1; k >= 0 && out[k].Addr+out[k].Len == a {
			out[k].Len += image.PageSize
			continue
		}
		out = append(out, image.Range{Addr: a, Len: image.PageSize})
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
