//go:build linux

package dirty

import (
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSelf tracks this test process: an anonymous mapping, a random set of
// written pages, exactly those reported.
func TestSelf(t *testing.T) {
	tr, err := StartSelf()
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
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
