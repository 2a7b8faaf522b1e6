package restore

import (
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

// newTTY returns the slave of the new pseudo-terminal that replaces the
// terminal path (one per terminal of the image), creating the pair on
// first use; the master is Result.TTY (the first terminal's).
func (r *restorer) newTTY(path string) (*os.File, error) {
	if f := r.ttys[path]; f != nil {
		return f, nil
	}
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, fmt.Errorf("unlocking the new pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, err
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	if r.ttys == nil {
		r.ttys = map[string]*os.File{}
	}
	r.ttys[path] = s
	r.extra = append(r.extra, s)
	if r.res.TTY == nil {
		r.res.TTY = m
	} else {
		r.res.ExtraTTYs = append(r.res.ExtraTTYs, m)
	}
	return s, nil
}

// setTTY gives terminal f the saved settings and window size, once per
// terminal. Failures are warnings: the process still runs.
func (r *restorer) setTTY(f *os.File, st *image.TTY, p *image.Process, fd *image.FD) {
	if st == nil || r.ttySet[f] {
		return
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return // not a terminal
	}
	if r.ttySet == nil {
		r.ttySet = map[*os.File]bool{}
	}
	r.ttySet[f] = true
	t := unix.Termios{Iflag: st.Iflag, Oflag: st.Oflag, Cflag: st.Cflag, Lflag: st.Lflag, Line: st.Line, Cc: st.Cc,
		Ispeed: st.Ispeed, Ospeed: st.Ospeed}
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &t); err != nil {
		r.warn("process %d fd %d: restoring terminal settings: %v", p.PID, fd.Num, err)
	}
	if st.Rows != 0 || st.Cols != 0 {
		w := unix.Winsize{Row: st.Rows, Col: st.Cols, Xpixel: st.XPixel, Ypixel: st.YPixel}
		if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &w); err != nil {
			r.warn("process %d fd %d: restoring the window size: %v", p.PID, fd.Num, err)
		}
	}
}

// dropTTYs closes the new pseudo-terminals' masters of a failed restore.
func (r *restorer) dropTTYs() {
	for _, m := range append([]*os.File{r.res.TTY}, r.res.ExtraTTYs...) {
		if m != nil {
			m.Close()
		}
	}
	r.res.TTY, r.res.ExtraTTYs = nil, nil
}
