package dump

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/ckpt/ckpt/internal/dirty"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
)

// Round is what one pre-copy round did.
type Round struct {
	// Dirty is the memory the trackers reported written since the
	// previous round (every tracked mapping on the first round), before
	// filtering by what is resident.
	Dirty uint64
	// Copied is the memory read and handed to the page writer.
	Copied uint64
}

// CopyRound is one round of an iterative pre-copy (live migration): it
// collects the pages written since the previous round (every page on the
// first) and copies those the dump would save into pw, which receives
// every round's pages (the destination keeps the newest copy of each
// page). The set of pages the frozen dump may reuse is kept exact across
// rounds: a page reported written is dropped from it until it is copied
// again, so a page written and then unmapped, or not readable when its
// round came, is read again while frozen. Copy is the first round.
func (pc *PreCopy) CopyRound(ctx context.Context, pw image.PageWriter) (Round, error) {
	pw = wrapInner(pw, pc.inner)
	pids := pc.sortedPIDs()
	var rd Round
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return rd, err
		}
		p := pc.procs[pid]
		// The first Collect registers and protects every mapping and
		// reports them whole: from there on every write is seen.
		written, err := p.tk.Collect()
		if err != nil {
			what := "collecting written pages"
			if p.copied == nil {
				what = "arming the write tracker"
			}
			return rd, fmt.Errorf("process %d: %s: %w", pid, what, err)
		}
		rd.Dirty += dirty.Bytes(written)
		cp := &copier{pid: pid, pw: pw, within: dirty.NewCursor(written)}
		if err := walkRunning(pid, cp.run); err != nil {
			return rd, err
		}
		// Still valid: what an earlier round copied and nobody wrote
		// since, plus what this round copied.
		p.copied = unionRanges(subtractRanges(p.copied, written), cp.copied)
		if p.copied == nil {
			p.copied = []dirty.Range{} // copied nothing, but tracked: forProcess needs non-nil
		}
		rd.Copied += dirty.Bytes(cp.copied)
	}
	return rd, nil
}

// trackedMappings lists pid's mappings the trackers follow, classified as
// the dump classifies them (for walkPages).
func trackedMappings(pid int) ([]*image.Mapping, error) {
	b, err := procfs.Read(pid, "maps")
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	maps, err := procfs.ParseMaps(b)
	if err != nil {
		return nil, err
	}
	var ms []*image.Mapping
	for _, e := range maps {
		if !dirty.Trackable(e) {
			continue
		}
		k := image.KindAnon
		switch {
		case e.Deleted():
			k = image.KindDeleted
		case e.Path != "" && !strings.HasPrefix(e.Path, "["):
			k = image.KindFile
		}
		ms = append(ms, &image.Mapping{Start: e.Start, End: e.End, Kind: k})
	}
	return ms, nil
}

// subtractRanges returns a minus b; both sorted and non-overlapping.
func subtractRanges(a, b []dirty.Range) []dirty.Range {
	var out []dirty.Range
	j := 0
	for _, r := range a {
		at, end := r.Addr, r.End()
		for j < len(b) && b[j].End() <= at {
			j++
		}
		for k := j; k < len(b) && b[k].Addr < end; k++ {
			if b[k].Addr > at {
				out = append(out, dirty.Range{Addr: at, Len: b[k].Addr - at})
			}
			at = max(at, b[k].End())
		}
		if at < end {
			out = append(out, dirty.Range{Addr: at, Len: end - at})
		}
	}
	return out
}

// intersectRanges returns the parts common to a and b; both sorted and
// non-overlapping.
func intersectRanges(a, b []dirty.Range) []dirty.Range {
	var out []dirty.Range
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].Addr, b[j].Addr), min(a[i].End(), b[j].End())
		if lo < hi {
			out = append(out, dirty.Range{Addr: lo, Len: hi - lo})
		}
		if a[i].End() < b[j].End() {
			i++
		} else {
			j++
		}
	}
	return out
}

// unionRanges merges two sorted, non-overlapping range lists.
func unionRanges(a, b []dirty.Range) []dirty.Range {
	all := make([]dirty.Range, 0, len(a)+len(b))
	all = append(all, a...)
	all = append(all, b...)
	sort.Slice(all, func(i, j int) bool { return all[i].Addr < all[j].Addr })
	var out []dirty.Range
	for _, r := range all {
		if r.Len == 0 {
			continue
		}
		if k := len(out) - 1; k >= 0 && out[k].End() >= r.Addr {
			if r.End() > out[k].End() {
				out[k].Len = r.End() - out[k].Addr
			}
			continue
		}
		out = append(out, r)
	}
	return out
}
