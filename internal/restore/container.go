package restore

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// A container image (Tree.Container set) is restored into new namespaces:
// the helper unshares mount, UTS, IPC, network and time namespaces, which
// are given the saved hostname, clock offsets and interfaces before any
// process enters them, and is moved into Options.Cgroup; the root is then
// cloned into a new PID namespace with set_tid {1}, and every other
// process is cloned by its parent inside that namespace with its saved
// PID there, whatever the host runs under the same numbers. The restorer
// keeps working with the PIDs it sees (rproc.pid); only what runs inside a
// process (setpgid, rt_sigqueueinfo, set_tid) uses the saved ones.

const containerNS = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET | unix.CLONE_NEWTIME

// enterNamespaces prepares the helper; it runs on the tracer thread.
func (r *restorer) enterNamespaces(in *ptrace.Injector) error {
	c := r.tree.Container
	if _, err := in.Syscall(unix.SYS_UNSHARE, containerNS); err != nil {
		return fmt.Errorf("helper: creating the container's namespaces: %w", err)
	}
	mem, err := ptrace.OpenMem(in.TID)
	if err != nil {
		return err
	}
	defer mem.Close()
	if err := mem.Write(r.scratch+offString, []byte("/\x00")); err != nil {
		return err
	}
	// Mounts made inside (the container's /proc) stay inside.
	if _, err := in.Syscall(unix.SYS_MOUNT, 0, r.scratch+offString, 0, unix.MS_REC|unix.MS_PRIVATE, 0); err != nil {
		return fmt.Errorf("helper: making the container's mounts private: %w", err)
	}
	if err := container.SetClocks(in.TID, c.Monotonic, c.Boottime); err != nil {
		return err
	}
	if err := container.SetHostname(in.TID, c.Hostname); err != nil {
		return err
	}
	if err := container.SetupNet(in.TID, c.Net); err != nil {
		return err
	}
	if r.opts.Cgroup != "" {
		cg := &container.Cgroup{Dir: r.opts.Cgroup}
		if err := cg.Add(in.TID); err != nil {
			return err
		}
	}
	return nil
}

// mountProc mounts, from the container's new PID 1, a /proc that shows the
// container's PIDs.
func (r *restorer) mountProc(in *ptrace.Injector) error {
	mem, err := ptrace.OpenMem(in.TID)
	if err != nil {
		return err
	}
	defer mem.Close()
	if err := mem.Write(r.scratch+offString, []byte("proc\x00/proc\x00")); err != nil {
		return err
	}
	if _, err := in.Syscall(unix.SYS_MOUNT, r.scratch+offString, r.scratch+offString+5, r.scratch+offString,
		unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, 0); err != nil {
		return fmt.Errorf("container: mounting /proc: %w", err)
	}
	return nil
}

// checkInnerID verifies that task host has id inside its PID namespace.
func checkInnerID(host, id int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", host))
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) < 2 {
				return fmt.Errorf("task %d is not in a nested PID namespace (NSpid %q)", host, rest)
			}
			if got, _ := strconv.Atoi(f[len(f)-1]); got != id {
				return fmt.Errorf("clone3 gave task %d id %d in the container, wanted %d", host, got, id)
			}
			return nil
		}
	}
	return fmt.Errorf("task %d: no NSpid in status", host)
}
