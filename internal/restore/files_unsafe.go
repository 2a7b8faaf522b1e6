package restore

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const tfdIocSetTicks = 0x40085400 // _IOW('T', 0, __u64)

// setTimerfdTicks sets the expiration count of a timerfd
// (TFD_IOC_SET_TICKS, CONFIG_CHECKPOINT_RESTORE).
func setTimerfdTicks(fd int, ticks uint64) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tfdIocSetTicks, uintptr(unsafe.Pointer(&ticks)))
	if e != 0 {
		return e
	}
	return nil
}

// sliceAddr is the address of b's first byte (a mapping made by unix.Mmap).
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
