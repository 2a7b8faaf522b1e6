package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func ptrace(req int, pid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// iovec is struct iovec for PTRACE_GETREGSET.
type iovec struct {
	base uintptr
	len  uint64
}

const ntX86XState = 0x202

// XStateMax bounds the XSAVE area read with GETREGSET.
const XStateMax = 16384

// GetXState reads the NT_X86_XSTATE regset (the whole XSAVE area).
func GetXState(tid int) ([]byte, error) {
	buf := make([]byte, XStateMax)
	iov := iovec{base: uintptr(unsafe.Pointer(&buf[0])), len: uint64(len(buf))}
	if err := ptrace(unix.PTRACE_GETREGSET, tid, ntX86XState, uintptr(unsafe.Pointer(&iov))); err != nil {
		return nil, err
	}
	return buf[:iov.len:iov.len], nil
}

// SetXState writes the NT_X86_XSTATE regset.
func SetXState(tid int, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	buf := append([]byte(nil), b...)
	iov := iovec{base: uintptr(unsafe.Pointer(&buf[0])), len: uint64(len(buf))}
	return ptrace(unix.PTRACE_SETREGSET, tid, ntX86XState, uintptr(unsafe.Pointer(&iov)))
}

// GetSigmask reads the blocked-signal mask of tid.
func GetSigmask(tid int) (uint64, error) {
	var m uint64
	err := ptrace(unix.PTRACE_GETSIGMASK, tid, 8, uintptr(unsafe.Pointer(&m)))
	return m, err
}

// SetSigmask writes the blocked-signal mask of tid.
func SetSigmask(tid int, m uint64) error {
	return ptrace(unix.PTRACE_SETSIGMASK, tid, 8, uintptr(unsafe.Pointer(&m)))
}

// RseqConfig is struct ptrace_rseq_configuration.
type RseqConfig struct {
	Pointer   uint64
	Size      uint32
	Signature uint32
	Flags     uint32
	Pad       uint32
}

const ptraceGetRseqConfiguration = 0x420f

// GetRseqConfig reads the rseq registration of tid.
func GetRseqConfig(tid int) (RseqConfig, error) {
	var c RseqConfig
	err := ptrace(ptraceGetRseqConfiguration, tid, unsafe.Sizeof(c), uintptr(unsafe.Pointer(&c)))
	return c, err
}

// SiginfoSize is the size of a kernel siginfo.
const SiginfoSize = 128

type peekArgs struct {
	off   uint64
	flags uint32
	nr    int32
}

// PeekSiginfo returns the queued signals of tid without dequeuing them:
// the thread's private queue, or the process's shared queue when shared.
func PeekSiginfo(tid int, shared bool) ([][]byte, error) {
	var out [][]byte
	buf := make([]byte, SiginfoSize*32)
	for {
		a := peekArgs{off: uint64(len(out)), nr: 32}
		if shared {
			a.flags = 1
		}
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKSIGINFO, uintptr(tid),
			uintptr(unsafe.Pointer(&a)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
		if e != 0 {
			return nil, e
		}
		if n == 0 {
			return out, nil
		}
		for i := 0; i < int(n); i++ {
			out = append(out, append([]byte(nil), buf[i*SiginfoSize:(i+1)*SiginfoSize]...))
		}
	}
}

// GetSiginfo returns the siginfo of the signal that caused the current stop.
func GetSiginfo(tid int) ([]byte, error) {
	buf := make([]byte, SiginfoSize)
	err := ptrace(unix.PTRACE_GETSIGINFO, tid, 0, uintptr(unsafe.Pointer(&buf[0])))
	return buf, err
}

// GetRobustList returns the robust futex list head and length of tid.
func GetRobustList(tid int) (head, length uint64, err error) {
	var h uintptr
	var l uint64
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid), uintptr(unsafe.Pointer(&h)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, 0, e
	}
	return uint64(h), l, nil
}

const archGetXcompSupp = 0x1021

// XFeatures returns the XSAVE features the kernel supports for user space
// on this machine (arch_prctl ARCH_GET_XCOMP_SUPP).
func XFeatures() (uint64, error) {
	var v uint64
	_, _, e := unix.Syscall(unix.SYS_ARCH_PRCTL, archGetXcompSupp, uintptr(unsafe.Pointer(&v)), 0)
	if e != 0 {
		return 0, e
	}
	return v, nil
}
