package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/repo"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
		t.Fatal("needs root (ptrace, clone3 set_tid) and CKPT_REQUIRE_ROOT=1 is set")
	}
	t.Skip("skipping: needs root for ptrace and clone3 set_tid (CKPT_REQUIRE_ROOT=1 makes this fail instead)")
}

func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s is missing (.ci/run installs it)", path)
		}
		t.Skipf("%s is not installed", path)
	}
}

// waitFor polls cond (a file growing, a process starting) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// dumpKillRestore runs cmd to completion twice: once uninterrupted, then
// dumped when ready() says it is mid-way, killed, and restored in the
// foreground. It returns the outputs of both (read by output()).
func dumpKillRestore(t *testing.T, name string, mk func(out string) *exec.Cmd, ready func(out string) bool) (want, got []byte) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	// Uninterrupted run.
	outA := filepath.Join(dir, "a.out")
	if out, err := mk(outA).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v: %s", err, out)
	}
	want, _ = os.ReadFile(outA)
	// Interrupted run.
	outB := filepath.Join(dir, "b.out")
	cmd := mk(outB)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	waitFor(t, name+" to make progress", func() bool { return ready(outB) })
	r := runCkpt(t, repoDir, "dump", "--name", name, fmt.Sprint(pid))
	if r.code != 0 {
		cmd.Process.Kill()
		ws, _ := cmd.Process.Wait()
		if ws != nil && ws.Exited() && ws.Success() {
			t.Fatalf("%s finished before the dump began (the machine is that slow?): make it run longer; dump said: %s", name, r.stderr)
		}
		t.Fatalf("dump: exit %d: %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if len(id) != 64 {
		t.Fatalf("dump printed %q, want one ID", r.stdout)
	}
	ws, _ := cmd.Process.Wait()
	if ws.Success() {
		t.Fatalf("%s finished before the dump killed it: make it slower", name)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("process %d still exists after the dump", pid)
	}
	r = runCkpt(t, repoDir, "restore", id[:12])
	if r.code != 0 {
		t.Fatalf("restore: exit %d: %s", r.code, r.stderr)
	}
	got, _ = os.ReadFile(outB)
	return want, got
}

func TestPython3(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	script := filepath.Join(t.TempDir(), "p.py")
	os.WriteFile(script, []byte(`import sys, time, hashlib
out = open(sys.argv[1], "w")
h = hashlib.sha256()
for i in range(400):
    h.update(str(i).encode())
    out.write(f"{i} {h.hexdigest()}\n"); out.flush()
    time.sleep(0.01)
`), 0o600)
	want, got := dumpKillRestore(t, "py", func(out string) *exec.Cmd {
		return exec.Command("/usr/bin/python3", script, out)
	}, func(out string) bool { return fileSize(out) > 3000 })
	if string(got) != string(want) {
		t.Fatalf("python3 output differs after dump/kill/restore:\n%s\nwant:\n%s", got, want)
	}
}

// TestPython3Multiprocessing checkpoints a multiprocessing.Pool mid-way:
// worker processes, the pool's threads, its pipes, and its semaphores
// (POSIX shm objects in /dev/shm, unlinked at once and mapped shared).
func TestPython3Multiprocessing(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	script := filepath.Join(t.TempDir(), "mp.py")
	os.WriteFile(script, []byte(`import multiprocessing as mp, sys, hashlib, time
def work(i):
    h = hashlib.sha256()
    for j in range(20000):
        h.update(str(i * j).encode())
    time.sleep(0.005)
    return h.hexdigest()[:16]
if __name__ == "__main__":
    out = open(sys.argv[1], "w")
    with mp.Pool(2) as p:
        for i, r in enumerate(p.imap(work, range(300))):
            out.write(f"{i} {r}\n"); out.flush()
`), 0o600)
	want, got := dumpKillRestore(t, "pool", func(out string) *exec.Cmd {
		return exec.Command("/usr/bin/python3", script, out)
	}, func(out string) bool { return fileSize(out) > 1000 })
	if len(got) == 0 || string(got) != string(want) {
		t.Fatalf("multiprocessing output differs after dump/kill/restore (%d vs %d bytes):\n%s", len(got), len(want), got)
	}
}

func TestPerl(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/perl")
	want, got := dumpKillRestore(t, "perl", func(out string) *exec.Cmd {
		return exec.Command("/usr/bin/perl", "-e", `open(my $o, ">", $ARGV[0]) or die; $o->autoflush(1);
my $x = 7; for my $i (0..499) { $x = ($x * 1103515245 + 12345) % 2147483648; print $o "$i $x\n"; select(undef,undef,undef,0.01); }`, out)
	}, func(out string) bool { return fileSize(out) > 400 })
	if string(got) != string(want) {
		t.Fatalf("perl output differs:\n%s\nwant:\n%s", got, want)
	}
}

func TestXz(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/xz")
	dir := t.TempDir()
	in := filepath.Join(dir, "input")
	// Compressible, not trivially: numbered lines with pseudo-random words.
	var b strings.Builder
	x := uint32(1)
	for b.Len() < 6<<20 {
		x = x*1664525 + 1013904223
		fmt.Fprintf(&b, "%d %08x %s\n", b.Len(), x, strings.Repeat(string(rune('a'+x%26)), int(x%40)))
	}
	os.WriteFile(in, []byte(b.String()), 0o600)
	want, got := dumpKillRestore(t, "xz", func(out string) *exec.Cmd {
		return exec.Command("/bin/sh", "-c", `exec /usr/bin/xz -6 -T1 -c "$1" > "$2"`, "sh", in, out)
	}, func(out string) bool { return fileSize(out) > 32<<10 })
	if len(got) == 0 || string(got) != string(want) {
		t.Fatalf("xz output differs after dump/kill/restore (%d vs %d bytes)", len(got), len(want))
	}
}

// TestVerifyNamesDamage: a flipped byte in a chunk is reported with the
// checkpoint and object, exit status 4.
func TestVerifyNamesDamage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	r, err := repo.InitDir(ctx, dir, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.NewWriter(ctx, repo.WriterOptions{Name: "job", Kind: repo.KindLibrary})
	ow, _ := w.Create("grid", "float64", nil)
	data := make([]byte, 100<<10)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	ow.Write(data)
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, runCkpt(t, dir, "verify"), exitOK, "verify of a sound repository")
	id := m.Chunks[0].ID
	p := filepath.Join(dir, "chunks", id[:2], id)
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o600)
	res := runCkpt(t, dir, "verify", "job")
	wantCode(t, res, exitDamaged, "verify of a damaged chunk")
	if !strings.Contains(res.stderr, m.ID()[:12]) || !strings.Contains(res.stderr, `"grid"`) || !strings.Contains(res.stderr, id[:12]) {
		t.Fatalf("verify must name checkpoint, object and chunk: %s", res.stderr)
	}
	wantCode(t, runCkpt(t, dir, "rm", "job"), exitOK, "rm")
	res = runCkpt(t, dir, "gc")
	wantCode(t, res, exitOK, "gc")
	if !strings.Contains(res.stderr, "removed") {
		t.Fatalf("gc says nothing: %s", res.stderr)
	}
	wantCode(t, runCkpt(t, dir, "inspect", "job"), exitNotFound, "inspect after rm")
}

// TestDemo runs the README's first command.
func TestDemo(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	dir := filepath.Join(t.TempDir(), "repo")
	r := runCkpt(t, dir, "demo")
	wantCode(t, r, exitOK, "demo")
	for _, want := range []string{"process demo: output of the restored run vs an uninterrupted run: MATCH", "library demo: MATCH", "demo: all results match"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// dirBytes is the size of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDumpCodec: the same python3 process dumped twice with
// --leave-running, once with the default codec and once with --codec
// none, into two repositories: stored uncompressed its chunks take more
// room than compressed, and the uncompressed checkpoint restores (the
// program's output equals an uninterrupted run's).
func TestDumpCodec(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	dir := t.TempDir()
	script := filepath.Join(dir, "p.py")
	os.WriteFile(script, []byte(`import sys, time
out = open(sys.argv[1], "w")
table = [str(i) * 20 for i in range(200000)]  # a compressible heap
for i in range(400):
    out.write(f"{i} {len(table[i])}\n"); out.flush()
    time.sleep(0.01)
`), 0o600)
	outA := filepath.Join(dir, "a.out")
	if out, err := exec.Command("/usr/bin/python3", script, outA).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v: %s", err, out)
	}
	outB := filepath.Join(dir, "b.out")
	cmd := exec.Command("/usr/bin/python3", script, outB)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor(t, "python3 to make progress", func() bool { return fileSize(outB) > 200 })
	auto, none := filepath.Join(dir, "auto"), filepath.Join(dir, "none")
	wantCode(t, runCkpt(t, auto, "dump", "--leave-running", "--name", "py", fmt.Sprint(cmd.Process.Pid)), exitOK, "dump, codec auto")
	r := runCkpt(t, none, "dump", "--codec", "none", "--name", "py", fmt.Sprint(cmd.Process.Pid))
	wantCode(t, r, exitOK, "dump --codec none")
	cmd.Wait()
	a, n := dirBytes(t, filepath.Join(auto, "chunks")), dirBytes(t, filepath.Join(none, "chunks"))
	t.Logf("chunks: %d bytes compressed, %d bytes with --codec none", a, n)
	if n < a*5/4 {
		t.Fatalf("--codec none stored %d bytes, auto %d: no difference", n, a)
	}
	wantCode(t, runCkpt(t, none, "restore", strings.TrimSpace(r.stdout)[:12]), exitOK, "restore of the uncompressed checkpoint")
	want, _ := os.ReadFile(outA)
	got, _ := os.ReadFile(outB)
	if string(got) != string(want) {
		t.Fatalf("output after restore differs:\n%s\nwant:\n%s", got, want)
	}
	for _, args := range [][]string{{"dump", "--codec", "lz4", "1"}, {"run", "--codec", "lz4", "--", "true"}} {
		if r := runCkpt(t, none, args...); r.code != exitUsage || !strings.Contains(r.stderr, "--codec") {
			t.Fatalf("%s --codec lz4: exit %d: %s", args[0], r.code, r.stderr)
		}
	}
}
