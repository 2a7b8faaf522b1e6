package ptrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// OptSuspendSeccomp is PTRACE_O_SUSPEND_SECCOMP: while set, the tracee's
// seccomp filters do not run, so system calls injected into a filtered
// process are not refused or killed. It needs CAP_SYS_ADMIN and is cleared
// by PTRACE_DETACH.
const OptSuspendSeccomp = 1 << 21

const (
	ptraceSeccompGetFilter   = 0x420c
	ptraceSeccompGetMetadata = 0x420d
)

// SeccompFilter is one filter of a thread's seccomp chain.
type SeccompFilter struct {
	Flags uint64 // SECCOMP_FILTER_FLAG_* it was installed with (LOG, SPEC_ALLOW)
	Prog  []byte // struct sock_filter[]
}

// SeccompFilters reads the stopped thread's seccomp filter chain with
// PTRACE_SECCOMP_GET_FILTER, oldest first (the kernel numbers them newest
// first). It needs CAP_SYS_ADMIN.
func SeccompFilters(tid int) ([]SeccompFilter, error) {
	var out []SeccompFilter
	for i := 0; ; i++ {
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetFilter, uintptr(tid), uintptr(i), 0, 0, 0)
		if e == unix.ENOENT {
			break
		}
		if e != 0 {
			return nil, e
		}
		buf := make([]byte, 8*n)
		if n > 0 {
			if _, _, e := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetFilter, uintptr(tid), uintptr(i), uintptr(unsafe.Pointer(&buf[0])), 0, 0); e != 0 {
				return nil, e
			}
		}
		md := [2]uint64{uint64(i), 0} // struct seccomp_metadata {filter_off, flags}
		if _, _, e := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetMetadata, uintptr(tid), unsafe.Sizeof(md), uintptr(unsafe.Pointer(&md)), 0, 0); e != 0 {
			return nil, e
		}
		out = append(out, SeccompFilter{Flags: md[1], Prog: buf})
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
