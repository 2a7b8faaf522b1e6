package restore

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The userfaultfd ABI (include/uapi/linux/userfaultfd.h), which x/sys
// lacks.
const (
	uffdUserModeOnly   = 1 // UFFD_USER_MODE_ONLY: flag of userfaultfd(2)
	uffdAPI            = 0xaa
	uffdioAPI          = 0xc018aa3f // UFFDIO_API, struct uffdio_api
	uffdioRegister     = 0xc020aa00 // UFFDIO_REGISTER, struct uffdio_register
	uffdioCopy         = 0xc028aa03 // UFFDIO_COPY, struct uffdio_copy
	uffdRegisterMissng = 1          // UFFDIO_REGISTER_MODE_MISSING
)

type uffdioAPIArg struct{ API, Features, Ioctls uint64 }

type uffdioRegisterArg struct{ Start, Len, Mode, Ioctls uint64 }

type uffdioCopyArg struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

func uffdIoctl(fd int, req uintptr, arg unsafe.Pointer) unix.Errno {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	return e
}

func uffdAPICall(fd int, a *uffdioAPIArg) unix.Errno {
	return uffdIoctl(fd, uffdioAPI, unsafe.Pointer(a))
}

func uffdRegisterCall(fd int, a *uffdioRegisterArg) unix.Errno {
	return uffdIoctl(fd, uffdioRegister, unsafe.Pointer(a))
}

// uffdCopy copies b to dst in the userfaultfd's process and returns the
// bytes copied with the error.
func uffdCopy(fd int, dst uint64, b []byte) (int, unix.Errno) {
	a := uffdioCopyArg{Dst: dst, Src: uint64(uintptr(unsafe.Pointer(&b[0]))), Len: uint64(len(b))}
	e := uffdIoctl(fd, uffdioCopy, unsafe.Pointer(&a))
	n := 0
	if a.Copy > 0 {
		n = int(a.Copy)
	}
	if e == 0 {
		n = len(b)
	}
	return n, e
}
