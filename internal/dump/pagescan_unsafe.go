package dump

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PAGEMAP_SCAN (Linux 6.7+, include/uapi/linux/fs.h): the ranges of pages
// of an address range that are present or swapped, found by the kernel's
// page-table walk, which skips unpopulated page tables whole. It replaces
// reading /proc/PID/smaps (which walks every page of every area to count
// them: ~20 ms for a 1 GiB process, while frozen) and 8 bytes of pagemap a
// page.
const (
	pagemapScanIoctl = 0xc0606610 // _IOWR('f', 16, struct pm_scan_arg)

	pageIsFile    = 1 << 2
	pageIsPresent = 1 << 3
	pageIsSwapped = 1 << 4
	pageIsPFNZero = 1 << 5 // mapped to the shared zero page: reads as zeros
)

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages       uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask, ReturnMask uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ Start, End, Categories uint64 }

// scanPages calls fn for each run of present or swapped pages in [start,
// end) of the process whose pagemap is pm, with its categories (pageIs*).
// Pages mapped to the zero page are left out: they hold zeros, which is
// what an image's absent pages restore as (a read of a never-written page
// maps it there).
func scanPages(pm *os.File, start, end uint64, vec []pageRegion, fn func(start, end, cats uint64) error) error {
	a := pmScanArg{
		Start: start, End: end,
		CategoryInverted:  pageIsPFNZero,
		CategoryMask:      pageIsPFNZero,
		CategoryAnyofMask: pageIsPresent | pageIsSwapped,
		ReturnMask:        pageIsPresent | pageIsSwapped | pageIsFile,
	}
	a.Size = uint64(unsafe.Sizeof(a))
	fd := pm.Fd()
	for a.Start < end {
		// The kernel advances vec and vec_len in the argument as it
		// fills the vector: both are set again for every call.
		a.Vec, a.VecLen = uint64(uintptr(unsafe.Pointer(&vec[0]))), uint64(len(vec))
		r, _, e := unix.Syscall(unix.SYS_IOCTL, fd, pagemapScanIoctl, uintptr(unsafe.Pointer(&a)))
		runtime.KeepAlive(vec)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		prev := a.Start
		for _, v := range vec[:r] {
			if v.Start < prev || v.End <= v.Start || v.End > end {
				return fmt.Errorf("PAGEMAP_SCAN returned region %#x-%#x out of order", v.Start, v.End)
			}
			prev = v.End
			if err := fn(v.Start, v.End, v.Categories); err != nil {
				return err
			}
		}
		if a.WalkEnd <= a.Start {
			return errors.New("PAGEMAP_SCAN made no progress")
		}
		a.Start = a.WalkEnd
	}
	runtime.KeepAlive(pm)
	return nil
}

var (
	scanOnce sync.Once
	scanOK   bool
)

// pageScanWorks says whether this kernel has PAGEMAP_SCAN (probed once on
// this process).
func pageScanWorks() bool {
	scanOnce.Do(func() {
		pm, err := os.Open("/proc/self/pagemap")
		if err != nil {
			return
		}
		defer pm.Close()
		var x [1]byte
		a := uint64(uintptr(unsafe.Pointer(&x[0]))) &^ 4095
		vec := make([]pageRegion, 1)
		scanOK = scanPages(pm, a, a+4096, vec, func(uint64, uint64, uint64) error { return nil }) == nil
		runtime.KeepAlive(&x)
	})
	return scanOK
}
