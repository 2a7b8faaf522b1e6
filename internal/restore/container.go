package restore

import (
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/nsenter"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// A container image (Tree.Container set) is restored into new namespaces.
// The restorer first creates the network and IPC namespaces and the
// interfaces (loopback, veth pairs with their addresses), and opens the
// tree's files, sockets and System V objects from a thread inside both, so
// they belong there and can bind the container's addresses. The helper
// then unshares mount, UTS and time namespaces, which get the saved
// hostname and clock offsets before any process enters them, joins the
// network and IPC namespaces (pidfd_getfd of the restorer's handles on
// them, setns), and is moved into Options.Cgroup; the
// root is cloned into a new PID namespace with set_tid {1}, and every other
// process is cloned by its parent inside that namespace with its saved PID
// there, whatever the host runs under the same numbers. The restorer keeps
// working with the PIDs it sees (rproc.pid); only what runs inside a
// process (setpgid, rt_sigqueueinfo, set_tid) uses the saved ones.

const containerNS = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWTIME

// openFilesIn opens the image's files and sockets; for a container, after
// creating its network and IPC namespaces, and from inside them (sockets
// and System V objects belong to the namespace of their creator).
func (r *restorer) openFilesIn() error {
	if r.tree.Container == nil {
		return r.openFiles()
	}
	ns, err := nsenter.NewNet()
	if err != nil {
		return err
	}
	r.netns = ns
	r.extra = append(r.extra, ns) // closed with the other files
	if r.ipcns, err = nsenter.New(unix.CLONE_NEWIPC, "ipc"); err != nil {
		return err
	}
	r.extra = append(r.extra, r.ipcns)
	if err := container.SetupNet(ns, r.tree.Container.Net); err != nil {
		return err
	}
	return r.inContainerNS(r.openFiles)
}

// inContainerNS runs fn in the container's network and IPC namespaces
// (directly for a tree that is no container).
func (r *restorer) inContainerNS(fn func() error) error {
	if r.netns == nil || r.ipcns == nil {
		return fn() // no container, or failed before anything was made inside
	}
	return nsenter.RunMany([]nsenter.NS{{File: r.netns, Type: unix.CLONE_NEWNET}, {File: r.ipcns, Type: unix.CLONE_NEWIPC}}, fn)
}

// joinNS makes the helper join namespace f of type nstype: pidfd_getfd of
// the restorer's file, setns, close.
func (r *restorer) joinNS(in *ptrace.Injector, f *os.File, nstype int, what string) error {
	fd, err := in.Syscall(unix.SYS_PIDFD_GETFD, uint64(r.pidfd), uint64(f.Fd()), 0)
	if err != nil {
		return fmt.Errorf("helper: taking the container's %s namespace: %w", what, err)
	}
	_, err = in.Syscall(unix.SYS_SETNS, fd, uint64(nstype))
	_, _ = in.Syscall(unix.SYS_CLOSE, fd)
	if err != nil {
		return fmt.Errorf("helper: joining the container's %s namespace: %w", what, err)
	}
	return nil
}

// enterNamespaces prepares the helper; it runs on the tracer thread.
func (r *restorer) enterNamespaces(in *ptrace.Injector) error {
	c := r.tree.Container
	if _, err := in.Syscall(unix.SYS_UNSHARE, containerNS); err != nil {
		return fmt.Errorf("helper: creating the container's namespaces: %w", err)
	}
	if err := r.joinNS(in, r.netns, unix.CLONE_NEWNET, "network"); err != nil {
		return err
	}
	if err := r.joinNS(in, r.ipcns, unix.CLONE_NEWIPC, "IPC"); err != nil {
		return err
	}
	mem, err := ptrace.OpenMem(in.TID)
	if err != nil {
		return err
	}
	defer mem.Close()
	if err := r.putString(mem, "/"); err != nil {
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
	if r.opts.Cgroup != "" {
		// The root is cloned straight into the group (CLONE_INTO_CGROUP):
		// moving the helper there through cgroup.procs costs 6-13 ms here
		// (the cgroup migration waits for an RCU grace period).
		f, err := (&container.Cgroup{Dir: r.opts.Cgroup}).Open()
		if err != nil {
			return err
		}
		r.extra = append(r.extra, f)
		fd, err := in.Syscall(unix.SYS_PIDFD_GETFD, uint64(r.pidfd), uint64(f.Fd()), 0)
		if err != nil {
			return fmt.Errorf("helper: taking the container's cgroup %s: %w", r.opts.Cgroup, err)
		}
		r.cgfd, r.intoCgroup = int(fd), true
	}
	return nil
}

// mountProc mounts, from the container's new PID 1, a /proc that shows the
// container's PIDs, and closes PID 1's copy of the helper's cgroup fd.
func (r *restorer) mountProc(in *ptrace.Injector) error {
	if r.intoCgroup {
		if _, err := in.Syscall(unix.SYS_CLOSE, uint64(r.cgfd)); err != nil {
			return fmt.Errorf("container: closing the cgroup fd: %w", err)
		}
	}
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
	ids, err := nsenter.PIDs(host, host)
	if err != nil {
		return err
	}
	if len(ids) < 2 {
		return fmt.Errorf("task %d is not in a nested PID namespace (NSpid %v)", host, ids)
	}
	if got := ids[len(ids)-1]; got != id {
		return fmt.Errorf("clone3 gave task %d id %d in the container, wanted %d", host, got, id)
	}
	return nil
}

// finishShmIn is finishShm in the container's IPC namespace, where its
// System V segments are.
func (r *restorer) finishShmIn(failed bool) {
	_ = r.inContainerNS(func() error { r.finishShm(failed); return nil })
}
