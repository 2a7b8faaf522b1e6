package restore_test

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/restore"
	"golang.org/x/sys/unix"
)

// openPTY returns a new pseudo-terminal's master and its slave's path.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// TestTTY restores a process whose stdin is a pseudo-terminal in raw mode
// onto a new pseudo-terminal with the same settings and window size
// (testdata/cprog/tty.c).
func TestTTY(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "tty", false)
	m, slave := openPTY(t)
	if err := unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	rs, ready := cycleOpts(t, restore.Options{NewTTY: true}, bin, slave)
	tm := rs.res.TTY
	if tm == nil {
		t.Fatal("restore made no new terminal")
	}
	defer tm.Close()
	fd0 := rs.tree.Processes[0].FDs[0]
	if fd0.Num != 0 || fd0.TTY == nil || fd0.TTY.Rows != 33 || fd0.TTY.Cols != 111 || fd0.TTY.Lflag&unix.ICANON != 0 {
		t.Fatalf("fd 0 saved as %+v, want a raw 33x111 terminal", fd0)
	}
	if _, err := tm.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	rs.expectPass(t, ready)
	_ = tm.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(tm).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "tty-ok" {
		t.Fatalf("read %q from the new terminal, %v; want tty-ok", line, err)
	}
}

// TestControllingTTY restores a session on a terminal onto a new
// pseudo-terminal: the leader's controlling terminal and the foreground
// process group (a child's) come back (testdata/cprog/ctty.c).
func TestControllingTTY(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "ctty", false)
	_, slave := openPTY(t)
	rs, ready := cycleOpts(t, restore.Options{NewTTY: true}, bin, slave)
	tm := rs.res.TTY
	if tm == nil {
		t.Fatal("restore made no new terminal")
	}
	defer tm.Close()
	defer func() {
		if t.Failed() {
			t.Log(rs.lines.All())
		}
	}()
	root := rs.tree.Processes[1] // the session leader
	if len(rs.tree.Processes) != 3 || root.CTTY == nil || root.CTTY.Path != slave || root.CTTY.Foreground != rs.tree.Processes[2].PID {
		t.Fatalf("controlling terminal saved as %+v, want %s with the child's group in the foreground", root.CTTY, slave)
	}
	for _, w := range rs.res.Warnings {
		if strings.Contains(w, "controlling terminal") || strings.Contains(w, "foreground") {
			t.Errorf("restore warning: %s", w)
		}
	}
	rs.expectPass(t, ready)
	_ = tm.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(tm).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "child-ok" {
		t.Fatalf("read %q from the new terminal, %v; want child-ok", line, err)
	}
}
