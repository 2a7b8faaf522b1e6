package restore_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/restore"
	"golang.org/x/sys/unix"
)

// TestInheritFD restores a process whose fd 3 was a pipe to the test (outside
// the tree) and maps it to a new pipe with Options.InheritFDs.
func TestInheritFD(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "inherit", false)
	r3, w3, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out, outw, _ := os.Pipe()
	cmd := exec.Command(bin)
	cmd.Stdout, cmd.Stderr = outw, outw
	cmd.ExtraFiles = []*os.File{w3}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outw.Close()
	w3.Close()
	lines := proctest.NewLines(out)
	ready := lines.Expect(t, "READY")
	pages := proctest.NewPages()
	// The reader outside stays until the dump: a pipe nobody reads any
	// more would be the tree's own (restored broken).
	tree, err := dump.Dump(context.Background(), cmd.Process.Pid, dump.Options{}, pages)
	r3.Close()
	if err != nil {
		t.Fatal(err)
	}
	var key string
	for _, fd := range tree.Processes[0].FDs {
		if fd.Num == 3 {
			key = fd.Path
		}
	}
	if !strings.HasPrefix(key, "pipe:[") {
		t.Fatalf("fd 3 recorded as %q", key)
	}
	_ = dump.Kill(tree)
	_ = cmd.Wait()
	proctest.WaitGone(t, cmd.Process.Pid)

	nr, nw, _ := os.Pipe()
	sr, sw, _ := os.Pipe()
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{
		Stdout: sw, Stderr: sw, InheritFDs: map[string]*os.File{key: nw}})
	nw.Close()
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() }()
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	slines := proctest.NewLines(sr)
	if got := slines.Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Errorf("got %q after %q", got, ready)
	}
	l, err := bufio.NewReader(nr).ReadString('\n')
	if err != nil || l != "inherited\n" {
		t.Errorf("inherited fd got %q, %v", l, err)
	}
}

// TestDetach restores with Options.Detach: the root is not our child.
func TestDetach(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", true)
	p := proctest.Start(t, bin, t.TempDir())
	p.Lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	_ = dump.Kill(tree)
	p.KillAndReap(t)
	sr, sw, _ := os.Pipe()
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{Detach: true, Stdout: sw, Stderr: sw})
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(res.Root, syscall.SIGKILL)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", res.Root))
	if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); f[1] == fmt.Sprint(os.Getpid()) {
		t.Errorf("detached root's parent is the restorer")
	}
	if _, err := res.Wait(); err == nil {
		t.Error("Wait on a detached root succeeded")
	}
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	proctest.NewLines(sr).Expect(t, "PASS")
}

// TestCredentials dumps and restores a process running as nobody.
func TestCredentials(t *testing.T) {
	proctest.RequireRoot(t)
	src := proctest.Build(t, "basic", false)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	bin := dir + "/basic"
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	r, w, _ := os.Pipe()
	cmd := exec.Command(bin, dir)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65533}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := proctest.NewLines(r)
	ready := lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), cmd.Process.Pid, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if c := tree.Processes[0].Creds; c.UID[1] != 65534 || c.GID[0] != 65534 || len(c.Groups) != 1 {
		t.Errorf("credentials in image: %+v", c)
	}
	_ = dump.Kill(tree)
	_ = cmd.Wait()
	proctest.WaitGone(t, cmd.Process.Pid)
	sr, sw, _ := os.Pipe()
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{Stdout: sw, Stderr: sw})
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() }()
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", res.Root))
	if !strings.Contains(string(st), "Uid:\t65534\t65534\t65534\t65534") || !strings.Contains(string(st), "Groups:\t65533") {
		t.Errorf("restored credentials:\n%s", st)
	}
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Errorf("got %q after %q", got, ready)
	}
}

// waitFile polls (bounded) until the file contains want.
func waitFile(t *testing.T, path, want string) string {
	t.Helper()
	for i := 0; i < 2000; i++ {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("%s never contained %q: %q", path, want, b)
	return ""
}

// TestStdoutFile restores a process whose stdout and stderr are a regular
// file: it is reopened by path (not substituted) and output continues in it.
func TestStdoutFile(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", false)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.log")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, dir)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFile(t, out, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), cmd.Process.Pid, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range tree.Processes[0].FDs {
		if fd.Num == 1 && fd.Kind != "file" {
			t.Errorf("stdout recorded as %s", fd.Kind)
		}
	}
	_ = dump.Kill(tree)
	_ = cmd.Wait()
	proctest.WaitGone(t, cmd.Process.Pid)
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() }()
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	got := waitFile(t, out, "PASS")
	if !strings.HasPrefix(got, "START") || strings.Count(got, "START") != 1 || strings.Index(got, "READY") > strings.Index(got, "PASS") {
		t.Errorf("log after restore: %q", got)
	}
}

// TestStdioTTY restores a process whose stdio was a terminal: the terminal is
// outside the tree, so fds 0-2 become the restorer's substitutes.
func TestStdioTTY(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", false)
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, t.TempDir())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := proctest.NewLines(ptmx)
	ready := lines.Expect(t, "READY")
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), cmd.Process.Pid, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range tree.Processes[0].FDs {
		if fd.Num <= 2 && (fd.Kind != "outside" || !strings.HasPrefix(fd.Path, "/dev/pts/")) {
			t.Errorf("fd %d recorded as %s %s", fd.Num, fd.Kind, fd.Path)
		}
	}
	_ = dump.Kill(tree)
	_ = cmd.Wait()
	proctest.WaitGone(t, cmd.Process.Pid)
	sr, sw, _ := os.Pipe()
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{Stdout: sw, Stderr: sw})
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() }()
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Errorf("got %q", got)
	}
}

// TestStopped dumps a process stopped by SIGSTOP: it comes back stopped and
// runs on after SIGCONT.
func TestStopped(t *testing.T) {
	proctest.RequireRoot(t)
	bin := proctest.Build(t, "basic", false)
	p := proctest.Start(t, bin, t.TempDir())
	ready := p.Lines.Expect(t, "READY")
	_ = syscall.Kill(p.PID, syscall.SIGSTOP)
	for i := 0; i < 5000 && proctest.State(p.PID) != 'T'; i++ {
		time.Sleep(time.Millisecond)
	}
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	if !tree.Processes[0].Stopped {
		t.Error("image does not say the process was stopped")
	}
	_ = dump.Kill(tree)
	p.KillAndReap(t)
	sr, sw, _ := os.Pipe()
	res, err := restore.Restore(context.Background(), tree, pages, restore.Options{Stdout: sw, Stderr: sw})
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() }()
	for i := 0; i < 5000 && proctest.State(res.Root) != 'T'; i++ {
		time.Sleep(time.Millisecond)
	}
	if s := proctest.State(res.Root); s != 'T' {
		t.Fatalf("restored process in state %c, want T", s)
	}
	_ = res.Signal(syscall.SIGCONT)
	for i := 0; i < 5000 && proctest.State(res.Root) != 'S'; i++ {
		time.Sleep(time.Millisecond)
	}
	_ = res.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Errorf("got %q", got)
	}
}

// TestReplacedBinary dumps a program whose executable was deleted while it
// ran (a rebuild): its mappings are saved whole and it restores.
func TestReplacedBinary(t *testing.T) {
	proctest.RequireRoot(t)
	src := proctest.Build(t, "basic", false)
	dir := t.TempDir()
	bin := filepath.Join(dir, "basic-copy")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	rs, ready := func() (*restored, string) {
		p := proctest.Start(t, bin, dir)
		ready := p.Lines.Expect(t, "READY")
		if err := os.Remove(bin); err != nil {
			t.Fatal(err)
		}
		pages := proctest.NewPages()
		tree, err := dump.Dump(context.Background(), p.PID, dump.Options{}, pages)
		if err != nil {
			t.Fatal(err)
		}
		_ = dump.Kill(tree)
		p.KillAndReap(t)
		sr, sw, _ := os.Pipe()
		res, err := restore.Restore(context.Background(), tree, pages, restore.Options{Stdout: sw, Stderr: sw})
		sw.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = res.Signal(syscall.SIGKILL); _, _ = res.Wait() })
		if len(res.Warnings) == 0 {
			t.Error("no warning about the missing executable")
		}
		return &restored{res: res, lines: proctest.NewLines(sr), tree: tree}, ready
	}()
	rs.expectPass(t, ready)
}
