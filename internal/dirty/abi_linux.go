//go:build linux

package dirty

// The userfaultfd and PAGEMAP_SCAN ABI (include/uapi/linux/userfaultfd.h and
// fs.h of Linux 6.7+), which Debian 12's headers and x/sys lack.

const (
	uffdUserModeOnly = 1 // UFFD_USER_MODE_ONLY: flag of userfaultfd(2)

	uffdAPI = 0xaa

	// ioctl numbers: _IOWR(0xAA, nr, struct).
	uffdioAPI      = 0xc018aa3f // UFFDIO_API, struct uffdio_api (24 bytes)
	uffdioRegister = 0xc020aa00 // UFFDIO_REGISTER, struct uffdio_register (32 bytes)
	// UFFDIO_UNREGISTER: _IOR(0xAA, 1, struct uffdio_range) (16 bytes).
	uffdioUnregister = 0x8010aa01
	// UFFDIO_WRITEPROTECT (0xc018aa06) is not used: it would install
	// markers over holes too, allocating page tables for whole ranges;
	// PAGEMAP_SCAN with PM_SCAN_WP_MATCHING protects instead.

	uffdFeatureWPUnpopulated = 1 << 13
	uffdFeatureWPAsync       = 1 << 15

	uffdioRegisterModeWP = 1 << 1

	// PAGEMAP_SCAN: _IOWR('f', 16, struct pm_scan_arg) (96 bytes).
	pagemapScan = 0xc0606610

	pmScanWPMatching   = 1 << 0
	pmScanCheckWPAsync = 1 << 1

	pageIsWPAllowed = 1 << 0
	pageIsWritten   = 1 << 1
	pageIsFile      = 1 << 2
	pageIsPresent   = 1 << 3
	pageIsSwapped   = 1 << 4
)

// uffdioAPIArg is struct uffdio_api.
type uffdioAPIArg struct{ API, Features, Ioctls uint64 }

// uffdioRegisterArg is struct uffdio_register.
type uffdioRegisterArg struct{ Start, Len, Mode, Ioctls uint64 }

// uffdioRangeArg is struct uffdio_range.
type uffdioRangeArg struct{ Start, Len uint64 }

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages       uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask, ReturnMask uint64
}

// pageRegion is struct page_region, one result of PAGEMAP_SCAN.
type pageRegion struct{ Start, End, Categories uint64 }
