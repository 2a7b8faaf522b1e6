// Package dirty tracks which pages of another process are written, page by
// page, so that a checkpoint (or a live migration round) re-reads only what
// changed.
//
// Tracker uses userfaultfd in asynchronous write-protect mode
// (UFFD_FEATURE_WP_ASYNC, Linux 6.7+) together with the PAGEMAP_SCAN ioctl of
// /proc/PID/pagemap: a userfaultfd is created inside the stopped target by an
// injected system call, taken over with pidfd_getfd and closed in the target
// at once, so the target never keeps the descriptor (a later dump does not see
// it, a restored image does not contain it). The tracker then registers the
// target's private mappings for write-protection and write-protects their
// populated pages from the outside; a write by the target clears the
// protection of that one page without any fault handler, and PAGEMAP_SCAN
// with PM_SCAN_WP_MATCHING reports the written pages and re-protects them in
// one atomic step. Mappings that appeared since the previous Collect are
// reported whole (the caller filters by what is resident) and registered.
//
// Kernels without soft-dirty bits (this project's targets) need this; where
// userfaultfd write-protect is unavailable (Start fails with ErrUnavailable)
// the fallback is comparing a fast hash of every page, which the repository
// writer does for every incremental checkpoint.
package dirty

// PageSize is the tracking granularity.
const PageSize = 4096

// Range is a page-aligned address range [Addr, Addr+Len).
type Range struct{ Addr, Len uint64 }

// End is the address after the range.
func (r Range) End() uint64 { return r.Addr + r.Len }

// Pages is the number of pages in the range.
func (r Range) Pages() uint64 { return r.Len / PageSize }

// Bytes sums the lengths of rs.
func Bytes(rs []Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += r.Len
	}
	return n
}

// AppendRange appends r to rs, merging it with the last range when they
// touch. rs must be sorted and r must not start below the last range's
// start.
func AppendRange(rs []Range, r Range) []Range {
	if r.Len == 0 {
		return rs
	}
	if k := len(rs) - 1; k >= 0 && rs[k].End() >= r.Addr {
		if r.End() > rs[k].End() {
			rs[k].Len = r.End() - rs[k].Addr
		}
		return rs
	}
	return append(rs, r)
}

// Cursor answers "is this address in the set" for ascending addresses in
// amortised constant time.
type Cursor struct {
	rs []Range
	i  int
}

// NewCursor walks the sorted, non-overlapping ranges rs.
func NewCursor(rs []Range) *Cursor { return &Cursor{rs: rs} }

// Contains reports whether addr is in the set. Calls must come with
// non-decreasing addresses.
func (c *Cursor) Contains(addr uint64) bool {
	for c.i < len(c.rs) && c.rs[c.i].End() <= addr {
		c.i++
	}
	return c.i < len(c.rs) && c.rs[c.i].Addr <= addr
}
