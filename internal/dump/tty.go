package dump

import (
	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

// ttyState reads the termios and window size of the terminal fd num of pid
// is on (nil when it cannot be read).
func ttyState(pid, num int) *image.TTY {
	f, err := targetFD(pid, num)
	if err != nil {
		return nil
	}
	defer f.Close()
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return nil
	}
	s := &image.TTY{Iflag: t.Iflag, Oflag: t.Oflag, Cflag: t.Cflag, Lflag: t.Lflag, Line: t.Line, Cc: t.Cc,
		Ispeed: t.Ispeed, Ospeed: t.Ospeed}
	if w, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
		s.Rows, s.Cols, s.XPixel, s.YPixel = w.Row, w.Col, w.Xpixel, w.Ypixel
	}
	return s
}
