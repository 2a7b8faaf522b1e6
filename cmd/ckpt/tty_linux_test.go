package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ttyScript runs as a session leader on a terminal: it reports whether the
// terminal is its controlling terminal with its group in the foreground
// and its settings, and echoes lines back in upper case until "quit".
const ttyScript = `
import os, sys, termios
def state():
    fd = os.open("/dev/tty", os.O_RDWR); os.close(fd)
    fg = os.tcgetpgrp(0) == os.getpgrp()
    attrs = termios.tcgetattr(0)
    return "ctty=yes fg=%s echo=%s size=%s" % (fg, bool(attrs[3] & termios.ECHO), os.get_terminal_size(0))
attrs = termios.tcgetattr(0)
attrs[3] &= ~termios.ECHO
termios.tcsetattr(0, termios.TCSANOW, attrs)
before = state()
print("ready", os.getpid(), flush=True)
for line in sys.stdin:
    line = line.strip()
    if line == "quit":
        break
    print("got", line.upper(), "same" if state() == before else "changed: " + state() + " was " + before, flush=True)
`

// TestRestoreNewTTY dumps a python3 session leader on a pseudo-terminal
// and restores it with 'ckpt restore --new-tty': it gets a new terminal
// with its settings (echo off), window size, controlling terminal and
// foreground group, and restore relays its own stdin and stdout to it.
func TestRestoreNewTTY(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	repoDir := filepath.Join(t.TempDir(), "repo")
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(m.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 31, Col: 97}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "-c", ttyScript)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	_ = m.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(m).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("read %q, %v; want ready", line, err)
	}
	r := runCkpt(t, repoDir, "dump", "--name", "tty", fmt.Sprint(cmd.Process.Pid))
	wantCode(t, r, exitOK, "dump")
	if ws, _ := cmd.Process.Wait(); ws.Success() {
		t.Fatal("the dumped program was not killed")
	}
	wantCode(t, runCkpt(t, repoDir, "restore", "--new-tty", "--detach", "tty"), exitUsage, "--new-tty with --detach")

	restore := exec.Command(ckptBin, "--repo", repoDir, "restore", "--new-tty", "tty")
	restore.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	restore.Stdin = strings.NewReader("hello\nquit\n")
	var out, errb bytes.Buffer
	restore.Stdout, restore.Stderr = &out, &errb
	if err := restore.Run(); err != nil {
		t.Fatalf("restore --new-tty: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "got HELLO same") || strings.Contains(out.String(), "hello") {
		t.Fatalf("restore relayed %q, want 'got HELLO same' and no echo of the input\nstderr: %s", out.String(), errb.String())
	}
	if strings.Contains(errb.String(), "controlling terminal") || strings.Contains(errb.String(), "foreground") {
		t.Errorf("restore warned: %s", errb.String())
	}
}
