package proccr

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
)

// FreezeTimeout bounds the wait for a container's cgroup to freeze.
var FreezeTimeout = 10 * time.Second

// containerDump freezes a container's cgroup around the seizing of its
// tasks: frozen tasks cannot fork or exit, so the tree walk from PID 1
// sees every process, and nothing escapes between two seizes. Once every
// task is in a ptrace stop the cgroup is thawed (the stops hold them), as
// injected system calls could not run in frozen tasks.
type containerDump struct {
	cg       *container.Cgroup
	root     int
	veth     *image.NetIf
	frozen   bool
	snap     *image.Container
	warnings []string
}

func (c *containerDump) freeze() error {
	if err := c.cg.Freeze(FreezeTimeout); err != nil {
		return err
	}
	c.frozen = true
	return nil
}

func (c *containerDump) thaw() error {
	if !c.frozen {
		return nil
	}
	c.frozen = false
	return c.cg.Thaw()
}

// seized checks that the tree is the whole cgroup, records the
// namespaces' state while everything is still frozen, and thaws.
func (c *containerDump) seized(pids []int) error {
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	procs, err := c.cg.Procs()
	if err != nil {
		return err
	}
	// Frozen means nothing unless the tree is in the group.
	inGroup := map[int]bool{}
	for _, p := range procs {
		inGroup[p] = true
	}
	for _, p := range pids {
		if !inGroup[p] && !gone(p) {
			return fmt.Errorf("process %d of the container is not in its cgroup %s (it was not frozen): %w", p, c.cg.Dir, dump.ErrUnsupported)
		}
	}
	for _, p := range procs {
		if !in[p] {
			return fmt.Errorf("process %d is in the container's cgroup %s but does not descend from its PID 1 (%d): %w", p, c.cg.Dir, c.root, dump.ErrUnsupported)
		}
	}
	if c.snap, err = container.Snapshot(c.root, c.veth); err != nil {
		return err
	}
	// Mounts made inside are not saved; say so in the image rather than
	// refuse: one the host unmounted after the container started looks
	// the same from here.
	extra, err := container.ExtraMounts(c.root)
	if err != nil {
		return err
	}
	for _, m := range extra {
		c.warnings = append(c.warnings, fmt.Sprintf("container: mount %s exists inside the container but not outside; its contents are not saved and a restore does not mount it", m))
	}
	return c.thaw()
}

// gone reports whether pid has exited (a zombie is in no cgroup).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}
