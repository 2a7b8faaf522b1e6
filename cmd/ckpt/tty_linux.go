package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// relayTTY connects restore's own stdin and stdout to the master of the
// new pseudo-terminal the restored tree runs on (--new-tty), as script(1)
// does. When stdin is a terminal it is put in raw mode (keys, ^C
// included, go to the restored program's terminal, whose line discipline
// handles them) and its window size is passed on, now and on every
// SIGWINCH. finish, called once the root has exited, waits briefly for
// the last output and puts the terminal back.
func relayTTY(m *os.File, stdin *os.File, stdout io.Writer) (finish func()) {
	fd := int(stdin.Fd())
	var saved *unix.Termios
	stopWinch := func() {}
	if t, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		raw := *t
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		if unix.IoctlSetTermios(fd, unix.TCSETS, &raw) == nil {
			saved = t
		}
		size := func() {
			if w, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
				_ = unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, w)
			}
		}
		size()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		go func() {
			for range winch {
				size()
			}
		}()
		stopWinch = func() { signal.Stop(winch) }
	}
	go func() { _, _ = io.Copy(m, stdin) }()
	done := make(chan struct{})
	go func() {
		// Ends with EIO once no process holds the terminal any more.
		_, _ = io.Copy(stdout, m)
		close(done)
	}()
	return func() {
		select {
		case <-done:
		case <-time.After(500 * time.Millisecond):
			// Something of the tree still holds the terminal.
			_ = m.SetReadDeadline(time.Now())
			<-done
		}
		stopWinch()
		if saved != nil {
			_ = unix.IoctlSetTermios(fd, unix.TCSETS, saved)
		}
	}
}
