package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup2 is wrapped when no cgroup v2 file system is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 file system is mounted")

// Slice is the directory under the cgroup2 mount that holds one group per
// container.
const Slice = "ckpt"

// Cgroup is a cgroup v2 group (a directory of the cgroup2 file system).
type Cgroup struct{ Dir string }

// Cgroup2Root returns where the cgroup2 file system is mounted (the unified
// hierarchy of a hybrid system is often at /sys/fs/cgroup/unified).
func Cgroup2Root() (string, error) { return cgroup2Root("/proc/self/mountinfo") }

func cgroup2Root(mountinfo string) (string, error) {
	ms, err := readMounts(mountinfo)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.fstype == "cgroup2" {
			return m.dir, nil
		}
	}
	return "", fmt.Errorf("%w (none in %s; cgroup v1 has no cgroup.freeze)", ErrNoCgroup2, mountinfo)
}

// CgroupFor returns the group of container name (not created).
func CgroupFor(name string) (*Cgroup, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return nil, err
	}
	return &Cgroup{Dir: filepath.Join(root, Slice, name)}, nil
}

// Create makes the group (and the ckpt slice above it). A group left by an
// earlier run is reused once it holds no process: the processes of a
// container whose PID 1 was just killed take a moment to go, so they are
// waited for, at most wait.
func (c *Cgroup) Create(wait time.Duration) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("creating cgroup %s: %w", c.Dir, err)
	}
	deadline := time.Now().Add(wait)
	for {
		pids, err := c.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still holds processes %v: the container is running (its ckpt run may have died); to start it again from its newest checkpoint, kill them first (echo 1 > %s)",
				c.Dir, pids, filepath.Join(c.Dir, "cgroup.kill"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Remove deletes the group; it must hold no process.
func (c *Cgroup) Remove() error {
	if err := unix.Rmdir(c.Dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing cgroup %s: %w", c.Dir, err)
	}
	return nil
}

// Open returns the group's directory, for clone3's CLONE_INTO_CGROUP.
func (c *Cgroup) Open() (*os.File, error) {
	f, err := os.OpenFile(c.Dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", c.Dir, err)
	}
	return f, nil
}

// Procs lists the processes in the group (host PIDs).
func (c *Cgroup) Procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("reading cgroup %s: %w", c.Dir, err)
	}
	var pids []int
	for _, l := range strings.Fields(string(b)) {
		p, err := strconv.Atoi(l)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: bad cgroup.procs line %q", c.Dir, l)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// Add moves process pid into the group.
func (c *Cgroup) Add(pid int) error {
	if err := writeCtl(filepath.Join(c.Dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("moving process %d into cgroup %s: %w", pid, c.Dir, err)
	}
	return nil
}

// Kill kills every process of the group (cgroup.kill, Linux 5.14).
func (c *Cgroup) Kill() error {
	if err := writeCtl(filepath.Join(c.Dir, "cgroup.kill"), "1"); err != nil {
		return fmt.Errorf("killing cgroup %s: %w", c.Dir, err)
	}
	return nil
}

// Freeze stops every task of the group (cgroup.freeze) and waits until the
// kernel reports the group frozen, at most timeout. Frozen tasks cannot
// fork, exit or run, so nothing escapes a dump that seizes them one by one.
// On error the group is thawed again.
func (c *Cgroup) Freeze(timeout time.Duration) error {
	return c.setFrozen(true, timeout)
}

// Thaw lets the group run again and waits until it is no longer frozen.
func (c *Cgroup) Thaw() error { return c.setFrozen(false, 5*time.Second) }

func (c *Cgroup) setFrozen(on bool, timeout time.Duration) error {
	ctl := filepath.Join(c.Dir, "cgroup.freeze")
	val := "0"
	if on {
		val = "1"
	}
	if err := writeCtl(ctl, val); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup %s cannot be frozen: it has no cgroup.freeze (not a non-root cgroup v2 group)", c.Dir)
		}
		return fmt.Errorf("cgroup %s cannot be frozen: writing %s to cgroup.freeze: %w", c.Dir, val, err)
	}
	// cgroup.events changes (and polls as POLLPRI) when "frozen" flips.
	ev, err := os.Open(filepath.Join(c.Dir, "cgroup.events"))
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", c.Dir, err)
	}
	defer ev.Close()
	deadline := time.Now().Add(timeout)
	for {
		b := make([]byte, 512)
		n, err := unix.Pread(int(ev.Fd()), b, 0)
		if err != nil {
			return fmt.Errorf("cgroup %s: reading cgroup.events: %w", c.Dir, err)
		}
		if frozenState(b[:n]) == on {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			if on {
				_ = writeCtl(ctl, "0")
				return fmt.Errorf("cgroup %s did not freeze within %v (a task stuck in the kernel?)", c.Dir, timeout)
			}
			return fmt.Errorf("cgroup %s did not thaw within %v", c.Dir, timeout)
		}
		fds := []unix.PollFd{{Fd: int32(ev.Fd()), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return fmt.Errorf("cgroup %s: polling cgroup.events: %w", c.Dir, err)
		}
	}
}

func frozenState(events []byte) bool {
	for _, l := range strings.Split(string(events), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "frozen" {
			return f[1] == "1"
		}
	}
	return false
}

// writeCtl writes a control file that must exist (never creates one).
func writeCtl(path, val string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
