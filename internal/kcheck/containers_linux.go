package kcheck

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckpt/ckpt/internal/container"
)

// probeCgroupFreeze checks what `ckpt run --isolate` freezes containers
// with: a cgroup v2 group under the ckpt slice that has cgroup.freeze.
func probeCgroupFreeze() Feature {
	f := Feature{Name: "cgroup v2 freezer"}
	root, err := container.Cgroup2Root()
	if err != nil {
		f.Detail = err.Error() + " (needed by ckpt run --isolate)"
		return f
	}
	dir := filepath.Join(root, container.Slice, fmt.Sprintf(".probe-%d", os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Detail = fmt.Sprintf("cannot create a cgroup under %s: %v (needed by ckpt run --isolate)", root, err)
		return f
	}
	defer os.Remove(dir)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err != nil {
		f.Detail = fmt.Sprintf("cgroup v2 at %s has no cgroup.freeze (Linux 5.2+; needed by ckpt run --isolate)", root)
		return f
	}
	f.OK, f.Detail = true, "cgroup v2 at "+root+" with cgroup.freeze (ckpt run --isolate)"
	return f
}

// probeTimeNS checks for time namespaces, which keep a restored
// container's CLOCK_MONOTONIC from jumping.
func probeTimeNS() Feature {
	f := Feature{Name: "time namespaces"}
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		f.Detail = "no /proc/self/ns/time (CONFIG_TIME_NS, Linux 5.6+; needed by ckpt run --isolate)"
		return f
	}
	f.OK, f.Detail = true, "CONFIG_TIME_NS (ckpt run --isolate)"
	return f
}
