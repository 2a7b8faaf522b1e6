//go:build linux

package dirty

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

func uffdAPICall(fd int, a *uffdioAPIArg) error { return ioctl(fd, uffdioAPI, unsafe.Pointer(a)) }

func uffdRegister(fd int, a *uffdioRegisterArg) error {
	return ioctl(fd, uffdioRegister, unsafe.Pointer(a))
}

func uffdUnregister(fd int, a *uffdioRangeArg) error {
	return ioctl(fd, uffdioUnregister, unsafe.Pointer(a))
}

// scan runs PAGEMAP_SCAN on the pagemap fd with vec as the result buffer
// and returns the number of regions filled.
func scan(fd int, a *pmScanArg, vec []pageRegion) (int, error) {
	a.Size = uint64(unsafe.Sizeof(*a))
	a.VecLen = uint64(len(vec))
	a.Vec = 0
	if len(vec) > 0 {
		a.Vec = uint64(uintptr(unsafe.Pointer(&vec[0])))
	}
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), pagemapScan, uintptr(unsafe.Pointer(a)))
		runtime.KeepAlive(vec)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}
