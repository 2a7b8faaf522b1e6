//go:build linux

package dirty

import (
	"errors"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// TestSelf tracks this test process: an anonymous mapping, a random set of
// written pages, exactly those reported.
func TestSelf(t *testing.T) {
	tr := startSelf(t)
	const n = 4096
	mem, err := unix.Mmap(-1, 0, n*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := 0; i < n; i += 2 { // half populated, half holes
		mem[i*PageSize] = 1
	}
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	first, err := tr.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !covers(first, Range{base, n * PageSize}) {
		t.Fatalf("first Collect does not report the new mapping whole")
	}
	for round := 0; round < 3; round++ {
		want := map[uint64]bool{}
		for k := 0; k < 40; k++ {
			i := rand.IntN(n)
			mem[i*PageSize+rand.IntN(PageSize)]++
			want[base+uint64(i)*PageSize] = true
		}
		got, err := tr.Collect()
		if err != nil {
			t.Fatal(err)
		}
		var in []Range
		for _, r := range got {
			if r.End() > base && r.Addr < base+n*PageSize {
				in = append(in, r)
			}
		}
		for a := range want {
			if !NewCursor(in).Contains(a) {
				t.Errorf("round %d: written page %#x not reported", round, a)
			}
		}
		if p := Bytes(in) / PageSize; p != uint64(len(want)) {
			t.Errorf("round %d: %d pages reported in the mapping, %d written", round, p, len(want))
		}
	}
}

func covers(rs []Range, r Range) bool {
	for _, x := range rs {
		if x.Addr <= r.Addr && x.End() >= r.End() {
			return true
		}
	}
	return false
}

// BenchmarkFirstWrite is what write tracking costs the tracked program:
// the first write to each page after a Collect (a checkpoint) takes a
// write-protect fault that the kernel resolves itself; later writes to the
// page cost nothing. "untracked" writes one byte per page of a populated
// 256 MiB mapping, "tracked" the same right after a Collect.
func BenchmarkFirstWrite(b *testing.B) {
	const n = 65536 // 256 MiB
	mem, err := unix.Mmap(-1, 0, n*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := 0; i < n; i++ {
		mem[i*PageSize] = 1
	}
	pass := func() {
		for i := 0; i < n; i++ {
			mem[i*PageSize]++
		}
	}
	b.Run("untracked", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pass()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/page")
	})
	b.Run("tracked", func(b *testing.B) {
		// Closed at once, not at the end of the benchmark: b.Run calls
		// this again with a larger b.N, and two trackers of one process
		// cannot register the same mappings.
		tr, err := StartSelf()
		if errors.Is(err, ErrUnavailable) {
			b.Skip(err)
		}
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := tr.Collect(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			pass()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/page")
	})
}

// TestSpareHugePages: with SpareHugePages a mapping backed by transparent
// huge pages is reported whole by every Collect and keeps its huge pages
// when written after one (a write-protected huge page would be split).
func TestSpareHugePages(t *testing.T) {
	const size = 8 << 20
	raw, err := unix.Mmap(-1, 0, size+(2<<20), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(raw)
	// The 2 MiB-aligned part, which madvise makes an area of its own.
	start := (uintptr(unsafe.Pointer(&raw[0])) + (2 << 20) - 1) &^ ((2 << 20) - 1)
	off := start - uintptr(unsafe.Pointer(&raw[0]))
	mem := raw[off : off+size]
	if err := unix.Madvise(mem, unix.MADV_HUGEPAGE); err != nil {
		t.Skipf("MADV_HUGEPAGE: %v", err)
	}
	for i := 0; i < size; i += PageSize {
		mem[i] = 1
	}
	if huge(t, start) == 0 {
		t.Skip("no transparent huge page was allocated (THP off or memory fragmented)")
	}
	tr := startSelf(t)
	tr.SpareHugePages = true
	area := Range{uint64(start), size}
	for round := 0; round < 2; round++ {
		got, err := tr.Collect()
		if err != nil {
			t.Fatal(err)
		}
		if !covers(got, area) {
			t.Fatalf("round %d: the huge-page mapping is not reported whole", round)
		}
		for i := 0; i < size; i += PageSize {
			mem[i]++
		}
		if n := huge(t, start); n == 0 {
			t.Fatalf("round %d: writes after a Collect split the huge pages", round)
		}
	}
}

// huge returns AnonHugePages of this process's mapping that starts at addr.
func huge(t *testing.T, addr uintptr) uint64 {
	t.Helper()
	b, err := procfs.Read(os.Getpid(), "smaps")
	if err != nil {
		t.Fatal(err)
	}
	sm, err := procfs.ParseSmaps(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range sm {
		if e.Start == uint64(addr) {
			return e.AnonHugePages
		}
	}
	t.Fatalf("no mapping at %#x", addr)
	return 0
}

// TestMremapOntoTrackedRange: a mapping moved (mremap) onto the exact range
// of a tracked mapping that was unmapped holds other bytes at the same
// addresses although none of its pages was written since the last
// Collect: the kernel drops the moved mapping's registration (no
// UFFD_FEATURE_EVENT_REMAP), so Collect reports the range whole instead of
// unchanged. A kept tracker relies on this (realloc moves big blocks).
func TestMremapOntoTrackedRange(t *testing.T) {
	tr := startSelf(t)
	const size = 64 * PageSize
	a, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < size; i += PageSize {
		a[i], b[i] = 'a', 'b'
	}
	at := uint64(uintptr(unsafe.Pointer(&a[0])))
	if _, err := tr.Collect(); err != nil { // arms both
		t.Fatal(err)
	}
	if got, err := tr.Collect(); err != nil || covers(got, Range{at, size}) {
		t.Fatalf("untouched mapping reported written: %v", err)
	}
	if err := unix.Munmap(a); err != nil {
		t.Fatal(err)
	}
	// b moves onto a's range: same addresses, other bytes.
	moved, err := unix.MremapPtr(unsafe.Pointer(&b[0]), size, unsafe.Pointer(&a[0]), size, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED)
	if err != nil || moved != unsafe.Pointer(&a[0]) {
		t.Fatalf("mremap: %v (at %p)", err, moved)
	}
	defer unix.Munmap(a)
	if a[0] != 'b' {
		t.Fatalf("moved mapping reads %q", a[0])
	}
	got, err := tr.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !covers(got, Range{at, size}) {
		t.Fatalf("a mapping moved onto a tracked range is not reported whole: %v", got)
	}
}

// startSelf tracks this test process, closed when the test ends; it skips
// the test where userfaultfd write-protect is unavailable.
func startSelf(tb testing.TB) *Tracker {
	tb.Helper()
	tr, err := StartSelf()
	if errors.Is(err, ErrUnavailable) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tr.Close() })
	return tr
}
