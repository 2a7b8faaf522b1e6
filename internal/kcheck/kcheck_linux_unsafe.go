//go:build linux

// Package kcheck probes the running kernel for the features process
// checkpoint/restore uses, and says why a feature is unavailable.
package kcheck

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Feature is one probed capability.
type Feature struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"` // dump/restore cannot work without it
	Detail   string `json:"detail"`
}

// Probe runs every check.
func Probe() []Feature {
	return []Feature{
		probePtrace(),
		probeClone3SetTID(),
		probeMMMap(),
		probeUffdWP(),
		probePagemapScan(),
		probeSoftDirty(),
		probeCgroupFreeze(),
		probeTimeNS(),
	}
}

func probePtrace() Feature {
	f := Feature{Name: "ptrace", Required: true}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/bin/sleep", "10")
	if err := cmd.Start(); err != nil {
		f.Detail = "cannot start a test process: " + err.Error()
		return f
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := unix.PtraceSeize(cmd.Process.Pid); err != nil {
		f.Detail = fmt.Sprintf("PTRACE_SEIZE: %v (needs CAP_SYS_PTRACE or the same uid, and a permissive kernel.yama.ptrace_scope)", err)
		return f
	}
	f.OK, f.Detail = true, "PTRACE_SEIZE works"
	return f
}

// cloneArgs is struct clone_args (size 88, CLONE_ARGS_SIZE_VER2).
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

func probeClone3SetTID() Feature {
	f := Feature{Name: "clone3 set_tid", Required: true}
	// Ask for a PID that is surely taken (our own): EEXIST proves the
	// kernel honours set_tid; EPERM means no CAP_CHECKPOINT_RESTORE.
	pid := uint64(os.Getpid())
	args := cloneArgs{exitSignal: uint64(unix.SIGCHLD), setTID: uint64(uintptr(unsafe.Pointer(&pid))), setTIDSize: 1}
	_, _, e := unix.Syscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	runtime.KeepAlive(&pid)
	switch e {
	case unix.EEXIST:
		f.OK, f.Detail = true, "set_tid honoured (restores keep their PIDs)"
	case unix.EPERM:
		f.Detail = "EPERM: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN"
	case unix.ENOSYS:
		f.Detail = "no clone3 (Linux < 5.3)"
	case unix.E2BIG, unix.EINVAL:
		f.Detail = fmt.Sprintf("%v: no set_tid (Linux < 5.5)", e)
	case 0:
		f.Detail = "unexpected: clone3 succeeded"
	default:
		f.Detail = e.Error()
	}
	return f
}

func probeMMMap() Feature {
	f := Feature{Name: "PR_SET_MM_MAP", Required: true}
	var size uint32
	_, _, e := unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP_SIZE, uintptr(unsafe.Pointer(&size)), 0, 0, 0)
	if e != 0 {
		f.Detail = fmt.Sprintf("PR_SET_MM_MAP_SIZE: %v (needs CONFIG_CHECKPOINT_RESTORE)", e)
		return f
	}
	if !hasCap(unix.CAP_SYS_ADMIN) && !hasCap(40) { // 40: CAP_CHECKPOINT_RESTORE
		f.Detail = "supported, but this process lacks CAP_SYS_ADMIN/CAP_CHECKPOINT_RESTORE"
		return f
	}
	f.OK, f.Detail = true, fmt.Sprintf("supported (struct size %d)", size)
	return f
}

func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}

const (
	uffdAPI            = 0xaa
	uffdFeatureWPAsync = 1 << 15
	uffdioAPI          = 0xc018aa3f
)

type uffdioAPIArg struct{ api, features, ioctls uint64 }

func probeUffdWP() Feature {
	f := Feature{Name: "userfaultfd write-protect"}
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		f.Detail = fmt.Sprintf("userfaultfd: %v (vm.unprivileged_userfaultfd or CONFIG_USERFAULTFD)", e)
		return f
	}
	defer unix.Close(int(fd))
	arg := uffdioAPIArg{api: uffdAPI, features: uffdFeatureWPAsync}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&arg))); e != 0 {
		f.Detail = fmt.Sprintf("UFFDIO_API with WP_ASYNC: %v (Linux < 6.7)", e)
		return f
	}
	f.OK, f.Detail = true, "async write-protect available: dirty-page tracking for incremental dumps"
	return f
}

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages, categoryInvMask, categoryMask, categoryAnyMask, returnMask uint64
}

const pagemapScan = 0xc0606610 // _IOWR('f', 16, struct pm_scan_arg)

func probePagemapScan() Feature {
	f := Feature{Name: "PAGEMAP_SCAN"}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		f.Detail = err.Error()
		return f
	}
	defer pm.Close()
	var vec [4]uint64
	buf := make([]byte, 4096)
	start := uint64(uintptr(unsafe.Pointer(&buf[0]))) &^ 4095
	arg := pmScanArg{size: uint64(unsafe.Sizeof(pmScanArg{})), start: start, end: start + 4096,
		vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), vecLen: 1, categoryMask: 1 << 1, returnMask: 1 << 1} // PAGE_IS_PRESENT
	_, _, e := unix.Syscall(unix.SYS_IOCTL, pm.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(buf)
	if e != 0 {
		f.Detail = fmt.Sprintf("ioctl PAGEMAP_SCAN: %v (Linux < 6.7)", e)
		return f
	}
	f.OK, f.Detail = true, "available"
	return f
}

func probeSoftDirty() Feature {
	f := Feature{Name: "soft-dirty"}
	page := make([]byte, 8192)
	off := (4096 - uintptr(unsafe.Pointer(&page[0]))%4096) % 4096
	addr := uintptr(unsafe.Pointer(&page[off]))
	if err := os.WriteFile("/proc/self/clear_refs", []byte("4"), 0); err != nil {
		f.Detail = "clear_refs: " + err.Error()
		return f
	}
	page[off] = 1
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		f.Detail = err.Error()
		return f
	}
	defer pm.Close()
	var ent [8]byte
	if _, err := pm.ReadAt(ent[:], int64(addr/4096*8)); err != nil {
		f.Detail = err.Error()
		return f
	}
	runtime.KeepAlive(page)
	if ent[6]&(1<<7) == 0 { // bit 55
		f.Detail = "bit 55 never set: kernel built without CONFIG_MEM_SOFT_DIRTY (ckpt compares page hashes instead)"
		return f
	}
	f.OK, f.Detail = true, "available"
	return f
}
