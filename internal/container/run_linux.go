package container

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitArg is the hidden first argument with which ckpt re-executes itself
// as a container's PID 1 (see Init).
const InitArg = "__container-init"

// Command returns a command that runs argv as PID 1 of new PID, mount, UTS,
// IPC, network and time namespaces, born inside cgroup cg (clone3 with
// CLONE_INTO_CGROUP, so not one instruction runs outside it). self is the
// ckpt executable: it runs first as the container's init (Init) to mount a
// private /proc, set the hostname and bring the loopback up, and then
// executes argv in its place. The caller closes the returned cgroup fd
// after Start.
//
// With hold set, init waits before executing argv until the caller closes
// the returned hold file (after setting up the network from outside, see
// SetupVeth); the caller must close it in any case.
func Command(self, hostname string, cg *Cgroup, argv []string, hold bool) (cmd *exec.Cmd, cgfd, holdW *os.File, err error) {
	if len(argv) == 0 {
		return nil, nil, nil, fmt.Errorf("container: no command")
	}
	fd, err := cg.Open()
	if err != nil {
		return nil, nil, nil, err
	}
	args := []string{InitArg, hostname}
	var holdR *os.File
	if hold {
		if holdR, holdW, err = os.Pipe(); err != nil {
			fd.Close()
			return nil, nil, nil, err
		}
		args = append(args, "--hold")
	}
	args = append(append(args, "--"), argv...)
	cmd = exec.Command(self, args...)
	if hold {
		cmd.ExtraFiles = []*os.File{holdR} // fd 3
	}
	cmd.Args[0] = "ckpt-init"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID | nsFlags,
		// A new time namespace (zero offsets) for the child's children;
		// execve moves the child itself into it (Linux 5.19+).
		Unshareflags: unix.CLONE_NEWTIME,
		Setsid:       true,
		UseCgroupFD:  true,
		CgroupFD:     int(fd.Fd()),
	}
	return cmd, fd, holdW, nil
}

// Init is the container's PID 1 before it becomes the program: args are
// HOSTNAME [--hold] -- CMD [ARGS...]. It never returns: it executes CMD or exits
// with status 127 and a message on stderr.
func Init(args []string) {
	if err := initContainer(args); err != nil {
		fmt.Fprintf(os.Stderr, "ckpt: container init: %v\n", err)
		os.Exit(127)
	}
}

func initContainer(args []string) error {
	hold := len(args) > 1 && args[1] == "--hold"
	if hold {
		args = append(args[:1:1], args[2:]...)
	}
	if len(args) < 3 || args[1] != "--" {
		return fmt.Errorf("usage: %s HOSTNAME [--hold] -- CMD [ARGS...]", InitArg)
	}
	if os.Getpid() != 1 {
		return fmt.Errorf("not PID 1 of a new PID namespace (PID %d)", os.Getpid())
	}
	if err := prepareMounts(); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(args[0])); err != nil {
		return fmt.Errorf("setting hostname %q: %w", args[0], err)
	}
	if err := linkUp("lo"); err != nil {
		return err
	}
	if hold {
		// ckpt sets up the network from outside; EOF says it is done.
		f := os.NewFile(3, "hold")
		b := make([]byte, 1)
		for {
			if _, err := f.Read(b); err != nil {
				break
			}
		}
		f.Close()
	}
	path, err := exec.LookPath(args[2])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args[2:], os.Environ())
}

// prepareMounts, run by PID 1 of a new PID namespace inside a new mount
// namespace, stops mount events from propagating to the host and mounts a
// /proc that shows the container's PIDs.
func prepareMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	return nil
}
