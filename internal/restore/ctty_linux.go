package restore

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// cttyFile returns the restorer's descriptor of what replaces a session
// leader's saved controlling terminal: the file given to its fd on that
// terminal (a new pty with Options.NewTTY, or the caller's substitute), or
// the new pty made for that terminal.
func (r *restorer) cttyFile(img *image.Process) *os.File {
	c := img.CTTY
	if c == nil || c.Path == "" {
		return nil
	}
	for _, fd := range img.FDs {
		if fd.Kind == image.FDOutside && fd.Path == c.Path {
			return r.files[fd]
		}
	}
	return r.ttys[c.Path]
}

// withTTY runs f with the terminal's descriptor installed in the process.
func (r *restorer) withTTY(in *ptrace.Injector, f *os.File, fn func(num uint64) error) error {
	num, err := r.getFD(in, int(f.Fd()))
	if err != nil {
		return err
	}
	err = fn(uint64(num))
	if _, cerr := in.Syscall(unix.SYS_CLOSE, uint64(num)); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// attachCTTY makes a new session leader's terminal its controlling
// terminal again (TIOCSCTTY, injected: only the leader itself may), right
// after its setsid and before its children are cloned from it, so they
// inherit it. A terminal that is another session's controlling terminal
// (the restorer's own, typically) is not taken: a warning says so and the
// session runs without one.
func (r *restorer) attachCTTY(in *ptrace.Injector, img *image.Process) error {
	if img.CTTY == nil || img.SID != img.PID {
		return nil
	}
	f := r.cttyFile(img)
	if f == nil {
		r.warn("process %d: its controlling terminal %s is not restored (none of its fds is on it)", img.PID, img.CTTY.Path)
		return nil
	}
	return r.withTTY(in, f, func(num uint64) error {
		if _, err := in.Syscall(unix.SYS_IOCTL, num, unix.TIOCSCTTY, 0); err != nil {
			r.warn("process %d: cannot make %s (replacing %s) its controlling terminal: %v", img.PID, f.Name(), img.CTTY.Path, err)
			return nil
		}
		if r.ctty == nil {
			r.ctty = map[int]bool{}
		}
		r.ctty[img.PID] = true
		return nil
	})
}

// foregroundCTTY gives a restored controlling terminal its foreground
// process group back (TIOCSPGRP from the leader), once the groups exist.
func (r *restorer) foregroundCTTY(p *rproc) error {
	img := p.img
	if !r.ctty[img.PID] || img.CTTY.Foreground <= 0 || img.CTTY.Foreground == img.PGID {
		return nil
	}
	g := img.CTTY.Foreground
	inSession := false
	for _, q := range r.tree.Processes {
		inSession = inSession || q.PGID == g && q.SID == img.SID && !q.Zombie
	}
	if !inSession {
		r.warn("process %d: the terminal's foreground process group %d is not in the tree; it stays %d", img.PID, g, img.PGID)
		return nil
	}
	mem, err := ptrace.OpenMem(p.pid) // as the restorer sees it (not inside a container)
	if err != nil {
		return err
	}
	defer mem.Close()
	if err := mem.Write(r.scratch+offStruct, binary.LittleEndian.AppendUint32(nil, uint32(g))); err != nil {
		return err
	}
	return r.withTTY(p.in, r.cttyFile(img), func(num uint64) error {
		if _, err := p.in.Syscall(unix.SYS_IOCTL, num, unix.TIOCSPGRP, r.scratch+offStruct); err != nil {
			return fmt.Errorf("process %d: setting the terminal's foreground process group to %d: %w", img.PID, g, err)
		}
		return nil
	})
}
