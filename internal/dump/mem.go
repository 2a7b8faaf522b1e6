package dump

import (
	"fmt"
	"strings"

	"github.com/ckpt/ckpt/internal/dirty"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
)

// classifyMappings turns /proc/PID/maps into image mappings, refusing the
// kinds of memory the restorer cannot rebuild.
func classifyMappings(pid int, comm string, maps []procfs.MapEntry, ids *idCache) ([]*image.Mapping, error) {
	var out []*image.Mapping
	for _, e := range maps {
		m := &image.Mapping{Start: e.Start, End: e.End, Shared: e.Shared, Offset: e.Offset, Path: e.Path}
		if e.Read {
			m.Prot |= image.ProtRead
		}
		if e.Write {
			m.Prot |= image.ProtWrite
		}
		if e.Exec {
			m.Prot |= image.ProtExec
		}
		refuse := func(what string) error {
			return fmt.Errorf("process %d (%s): mapping %#x-%#x %s: %s: %w", pid, comm, e.Start, e.End, e.Path, what, ErrUnsupported)
		}
		if ok, why := shmMapping(pid, e, m, ids); ok {
			if why != "" {
				return nil, refuse(why)
			}
			out = append(out, m)
			continue
		}
		switch {
		case e.Path == "[vvar]":
			m.Kind = image.KindVvar
		case e.Path == "[vvar_vclock]":
			m.Kind = image.KindVvarVclock
		case e.Path == "[vdso]":
			m.Kind = image.KindVdso
		case e.Path == "[vsyscall]":
			m.Kind = image.KindVsyscall
		case e.Path == "[heap]":
			m.Kind = image.KindHeap
		case e.Path == "[stack]":
			m.Kind = image.KindStack
		case strings.HasPrefix(e.Path, "/memfd:"):
			return nil, refuse("memfd memory")
		case strings.HasPrefix(e.Path, "/SYSV"):
			return nil, refuse("System V shared memory")
		case e.Path == "" || strings.HasPrefix(e.Path, "[anon:"):
			if e.Shared {
				return nil, refuse("shared anonymous memory")
			}
			m.Kind = image.KindAnon
			m.Path = ""
		case strings.HasPrefix(e.Path, "["):
			return nil, refuse("special mapping")
		case e.Shared && (e.Path == "/dev/zero (deleted)" || e.Path == "/ (deleted)"):
			return nil, refuse("shared anonymous memory")
		case e.Deleted():
			m.Kind = image.KindDeleted
		default:
			m.Kind = image.KindFile
			id, err := ids.get(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, e.Start, e.End))
			if err != nil {
				return nil, fmt.Errorf("process %d: mapping %#x-%#x %s: %w", pid, e.Start, e.End, e.Path, err)
			}
			if id.Mode&0o170000 != 0o100000 {
				return nil, refuse("mapping of a device or special file")
			}
			m.File = id
		}
		out = append(out, m)
	}
	return out, nil
}

const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61
)

// batch is the most memory read and handed to the PageWriter at once
// (without a PageFiller), and the window of one pagemap read.
const batch = 16 << 20

// PageFiller is implemented by page writers that can take memory read
// straight into their own buffers: FillPages saves pid's [addr, addr+n),
// calling read for consecutive pieces of it, each of which read must fill
// completely, possibly later and from other goroutines; WaitFills returns
// once every such read is done (with the first error). It saves a copy of
// every page and lets several pieces be read and sealed at once.
type PageFiller interface {
	FillPages(pid int, addr uint64, n int, read func(addr uint64, b []byte) error) error
	WaitFills(pid int) error
}

// readResident maps each area's start to its resident and swapped bytes,
// from /proc/PID/smaps, so that walkPages skips areas with no page without
// reading their pagemap (huge reservations). It returns nil when not
// needed (PAGEMAP_SCAN skips them itself) or not known.
func readResident(pid int) map[uint64]uint64 {
	if pageScanWorks() {
		return nil
	}
	b, err := procfs.Read(pid, "smaps")
	if err != nil {
		return nil
	}
	sm, err := procfs.ParseSmaps(b)
	if err != nil {
		return nil
	}
	resident := map[uint64]uint64{}
	for _, e := range sm {
		resident[e.Start] = e.Rss + e.Swap
	}
	return resident
}

// dumpPages saves, per page, what the restorer cannot get back from a file:
// present or swapped anonymous pages, private copies in file mappings, and
// every page of a mapping of a deleted file.
//
// resident, when known, maps an area's start to its resident and swapped
// bytes; areas with none are skipped without reading their pagemap.
//
// With a pre-copy (fp not nil), pages stored by the pre-copy and not
// written since are declared unchanged instead of read. When saved is not
// nil, the ranges the image holds (read or declared unchanged) are
// appended to it.
func dumpPages(pid int, ms []*image.Mapping, resident map[uint64]uint64, mem *ptrace.Mem, pw image.PageWriter, fp *frozenPass, saved *[]dirty.Range) error {
	var save func(m *image.Mapping, addr uint64, n int) error
	if pf, ok := pw.(PageFiller); ok {
		save = func(m *image.Mapping, addr uint64, n int) error {
			read := func(a uint64, b []byte) error {
				if err := mem.Read(a, b); err != nil {
					return fmt.Errorf("process %d: mapping %#x-%#x: %w", pid, m.Start, m.End, err)
				}
				return nil
			}
			if err := pf.FillPages(pid, addr, n*image.PageSize, read); err != nil {
				return fmt.Errorf("process %d: saving pages at %#x: %w", pid, addr, err)
			}
			m.Saved += uint64(n) * image.PageSize
			return nil
		}
	} else {
		save = batchSaver(pid, mem, pw)
	}
	if saved != nil {
		read := save
		save = func(m *image.Mapping, addr uint64, n int) error {
			if err := read(m, addr, n); err != nil {
				return err
			}
			*saved = dirty.AppendRange(*saved, dirty.Range{Addr: addr, Len: uint64(n) * image.PageSize})
			return nil
		}
	}
	var err error
	if fp == nil {
		err = walkPages(pid, ms, resident, save)
	} else {
		err = dumpPagesReuse(pid, ms, resident, fp, save, saved)
	}
	if pf, ok := pw.(PageFiller); ok {
		// Every page must be read before mem is closed and before the
		// caller may let the process run.
		if werr := pf.WaitFills(pid); err == nil && werr != nil {
			err = fmt.Errorf("process %d: %w", pid, werr)
		}
	}
	return err
}

// batchSaver reads runs of pages into a batch buffer and hands it to pw.
func batchSaver(pid int, mem *ptrace.Mem, pw image.PageWriter) func(m *image.Mapping, addr uint64, n int) error {
	var buf []byte
	return func(m *image.Mapping, addr uint64, n int) error {
		if buf == nil {
			buf = make([]byte, batch)
		}
		b := buf[:n*image.PageSize]
		if err := mem.Read(addr, b); err != nil {
			return fmt.Errorf("process %d: mapping %#x-%#x: %w", pid, m.Start, m.End, err)
		}
		if err := pw.WritePages(pid, addr, b); err != nil {
			return fmt.Errorf("process %d: saving pages at %#x: %w", pid, addr, err)
		}
		m.Saved += uint64(len(b))
		return nil
	}
}

// dumpPagesReuse saves the pages written since the pre-copy with save and
// declares the others unchanged (appending them to saved, if not nil).
func dumpPagesReuse(pid int, ms []*image.Mapping, resident map[uint64]uint64, fp *frozenPass, save func(m *image.Mapping, addr uint64, n int) error, saved *[]dirty.Range) error {
	return walkPages(pid, ms, resident, func(m *image.Mapping, addr uint64, n int) error {
		return fp.runs(m, addr, n, func(a, l uint64) error {
			if err := fp.reuse.ReusePages(pid, a, l); err != nil {
				return fmt.Errorf("process %d: reusing pre-copied pages at %#x: %w", pid, a, err)
			}
			m.Saved += l
			if saved != nil {
				*saved = dirty.AppendRange(*saved, dirty.Range{Addr: a, Len: l})
			}
			return nil
		}, func(a uint64, n int) error { return save(m, a, n) })
	})
}
