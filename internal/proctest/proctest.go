// Package proctest holds helpers for the dump and restore tests: C fixtures
// compiled on demand and cached, an in-memory page store, and a handle on a
// started fixture that reads its output line by line.
package proctest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
)

// RequireRoot skips the test when not root, or fails it when the
// environment says root is required (CKPT_REQUIRE_ROOT=1, set by CI).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
		t.Fatal("this test needs root (ptrace, clone3 set_tid) and CKPT_REQUIRE_ROOT=1 is set")
	}
	t.Skip("skipping: needs root for ptrace and clone3 set_tid (set CKPT_REQUIRE_ROOT=1 to make this a failure)")
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var buildMu sync.Mutex

// Build compiles testdata/cprog/name.c (with -static when static) and
// returns the binary's path. Binaries are cached by a hash of the source and
// flags under the user cache directory.
func Build(t testing.TB, name string, static bool) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal("gcc not found")
		}
		t.Skip("gcc not found")
	}
	src := filepath.Join(repoRoot(), "testdata", "cprog", name+".c")
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-O1", "-g", "-pthread", "-Wall"}
	if static {
		args = append(args, "-static")
	}
	h := sha256.New()
	h.Write(code)
	// The headers every fixture may include are part of what is built.
	headers, _ := filepath.Glob(filepath.Join(repoRoot(), "testdata", "cprog", "*.h"))
	sort.Strings(headers)
	for _, hf := range headers {
		b, err := os.ReadFile(hf)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	fmt.Fprint(h, args)
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "ckpt-fixtures")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	suffix := ""
	if static {
		suffix = "-static"
	}
	out := filepath.Join(dir, fmt.Sprintf("%s%s-%s", name, suffix, sum))
	if _, err := os.Stat(out); err == nil {
		return out
	}
	// A unique temporary name: test binaries of several packages may
	// build the same fixture at once; the rename is atomic.
	tf, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	tmp := tf.Name()
	tf.Close()
	defer os.Remove(tmp)
	cmd := exec.Command("gcc", append(args, "-o", tmp, src)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compiling %s: %v\n%s", src, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Pages is an in-memory image.PageWriter and image.PageReader.
type Pages struct {
	mu sync.Mutex
	m  map[int]map[uint64][]byte // pid -> addr -> extent
}

// NewPages returns an empty store.
func NewPages() *Pages { return &Pages{m: map[int]map[uint64][]byte{}} }

// WritePages implements image.PageWriter.
func (p *Pages) WritePages(pid int, addr uint64, b []byte) error {
	if addr%image.PageSize != 0 || len(b)%image.PageSize != 0 {
		return fmt.Errorf("unaligned write %#x+%d", addr, len(b))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[pid] == nil {
		p.m[pid] = map[uint64][]byte{}
	}
	p.m[pid][addr] = append([]byte(nil), b...)
	return nil
}

// Ranges implements image.PageReader.
func (p *Pages) Ranges(pid int) ([]image.Range, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []image.Range
	for a, b := range p.m[pid] {
		out = append(out, image.Range{Addr: a, Len: uint64(len(b))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// ReadPages implements image.PageReader. The range must lie inside one
// saved extent.
func (p *Pages) ReadPages(pid int, addr uint64, b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, ext := range p.m[pid] {
		if addr >= a && addr+uint64(len(b)) <= a+uint64(len(ext)) {
			copy(b, ext[addr-a:])
			return nil
		}
	}
	return fmt.Errorf("pid %d: no saved pages at %#x+%d", pid, addr, len(b))
}

// Bytes is the total size of the saved pages.
func (p *Pages) Bytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.m {
		for _, b := range m {
			n += len(b)
		}
	}
	return n
}

// Proc is a started fixture whose stdout is read line by line.
type Proc struct {
	Cmd   *exec.Cmd
	PID   int
	Lines *Lines
}

// Lines delivers the lines read from a pipe.
type Lines struct {
	// Diag, if set, is called for extra context when Expect fails.
	Diag func() string
	ch   chan string
	mu   sync.Mutex
	all  []string
}

// NewLines reads lines from f until EOF.
func NewLines(f *os.File) *Lines {
	l := &Lines{ch: make(chan string, 1024)}
	go func() {
		s := bufio.NewScanner(f)
		for s.Scan() {
			l.mu.Lock()
			l.all = append(l.all, s.Text())
			l.mu.Unlock()
			l.ch <- s.Text()
		}
		close(l.ch)
		f.Close()
	}()
	return l
}

// Expect waits (up to 20 s) for a line starting with prefix and returns it;
// it fails the test on EOF, timeout or a line starting with "FAIL".
func (l *Lines) Expect(t testing.TB, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s, ok := <-l.ch:
			if !ok {
				t.Fatalf("output ended while waiting for %q; got %q", prefix, l.All())
			}
			if strings.HasPrefix(s, prefix) {
				return s
			}
			if strings.HasPrefix(s, "FAIL") {
				t.Fatalf("fixture: %s", s)
			}
		case <-timeout:
			diag := ""
			if l.Diag != nil {
				diag = l.Diag()
			}
			t.Fatalf("timed out waiting for %q; got %q\n%s", prefix, l.All(), diag)
		}
	}
}

// All returns every line read so far.
func (l *Lines) All() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

// Start runs a fixture with stdout and stderr on a pipe read by Lines. The
// process is killed and reaped at the end of the test.
func Start(t testing.TB, path string, args ...string) *Proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := &Proc{Cmd: cmd, PID: cmd.Process.Pid, Lines: NewLines(r)}
	t.Cleanup(func() {
		_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return p
}

// KillAndReap kills the fixture's process group and reaps it, then waits
// until its PID is free.
func (p *Proc) KillAndReap(t testing.TB) {
	t.Helper()
	_ = syscall.Kill(-p.PID, syscall.SIGKILL)
	_ = p.Cmd.Process.Kill()
	_ = p.Cmd.Wait()
	WaitGone(t, p.PID)
}

// WaitGone polls (bounded, 10 s) until /proc/PID no longer exists.
func WaitGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not go away", pid)
}

// State returns the state letter of /proc/PID/stat.
func State(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// CPUTime is the CPU time pid has used (user and system): how far a
// program that works at a steady rate has got, whatever the machine's load.
func CPUTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := procfs.Read(pid, "stat")
	if err != nil {
		t.Fatal(err)
	}
	st, err := procfs.ParseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(st.UTime+st.STime) * time.Second / 100 // USER_HZ
}

// Describe returns what /proc says about pid's threads: state, wchan,
// current syscall, signal masks. For failure messages.
func Describe(pid int) string {
	var b strings.Builder
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range ents {
		dir := fmt.Sprintf("/proc/%d/task/%s/", pid, e.Name())
		stat, _ := os.ReadFile(dir + "stat")
		wchan, _ := os.ReadFile(dir + "wchan")
		sc, _ := os.ReadFile(dir + "syscall")
		st, _ := os.ReadFile(dir + "status")
		var sig []string
		for _, l := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(l, "Sig") || strings.HasPrefix(l, "ShdPnd") || strings.HasPrefix(l, "State") {
				sig = append(sig, l)
			}
		}
		fmt.Fprintf(&b, "task %s: %s\n  wchan %s syscall %s\n  %s\n", e.Name(), stat, wchan, sc, strings.Join(sig, " "))
	}
	return b.String()
}
