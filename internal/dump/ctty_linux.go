package dump

import (
	"fmt"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// controllingTTY returns the controlling terminal of a session leader (nil
// for other processes, or without one): its device from stat's tty_nr, its
// path from the leader's fd on the same device (or /dev/pts/N from the
// device number) and the terminal's foreground process group.
func controllingTTY(pid int, st procfs.Stat, fds []*image.FD) *image.ControllingTTY {
	if st.SID != pid || st.TTY == 0 {
		return nil
	}
	c := &image.ControllingTTY{Dev: uint64(uint32(st.TTY)), Foreground: max(st.TPGID, 0)}
	for _, fd := range fds {
		var s unix.Stat_t
		if fd.Kind == image.FDOutside && unix.Stat(procfs.Path(pid, fmt.Sprintf("fd/%d", fd.Num)), &s) == nil &&
			s.Mode&unix.S_IFMT == unix.S_IFCHR && s.Rdev == c.Dev {
			c.Path = fd.Path
			return c
		}
	}
	if maj := unix.Major(c.Dev); maj >= 136 && maj < 144 {
		c.Path = fmt.Sprintf("/dev/pts/%d", (maj-136)<<8|unix.Minor(c.Dev))
	}
	return c
}
