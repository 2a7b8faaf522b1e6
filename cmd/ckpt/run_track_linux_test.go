package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// trackedTreeScript keeps 8 MiB of state in a bytearray, changes a few
// bytes of it per step, forks children that rewrite their copy of it and
// report a digest through their exit status, and runs perl (fork + exec)
// now and then: a tree whose processes come, go and execute other programs
// between checkpoints. Its output depends on every byte of the state.
const trackedTreeScript = `import sys, os, time, hashlib
out = open(sys.argv[1], "w")
mem = bytearray(b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(1 << 18)))
for i in range(60):
    for k in range(64):
        p = (i * 7919 + k * 104729) % len(mem)
        mem[p] = (mem[p] + i + k) & 255
    status = 0
    if i % 10 == 3:
        pid = os.fork()
        if pid == 0:
            for j in range(10):
                mem[(j * 4099 + i) % len(mem)] ^= 0x5a
                time.sleep(0.02)
            os._exit(hashlib.sha256(mem).digest()[0] & 0x7f)
        status = os.waitpid(pid, 0)[1] >> 8
    if i % 10 == 7:
        pid = os.fork()
        if pid == 0:
            os.execv("/usr/bin/perl", ["perl", "-e", "my $s = 'x' x (4 << 20); select(undef, undef, undef, 0.2); exit(length($s) % 251)"])
        status += os.waitpid(pid, 0)[1] >> 8
    out.write(f"{i} {status} {hashlib.sha256(mem).hexdigest()[:16]}\n"); out.flush()
    time.sleep(0.04)
`

// TestRunTrackedTree: under ckpt run a checkpoint after the first reads
// only the pages written since the previous one (write trackers kept in
// the processes between checkpoints, armed during the freeze in processes
// born since, replaced in processes that executed another program); the
// program's root is killed after a few such checkpoints (a child it forked
// may outlive it: ckpt run kills the rest of the program's group), then
// restored from the newest, and its output equals an uninterrupted run's,
// so no written page was missed.
func TestRunTrackedTree(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	requireTool(t, "/usr/bin/perl")
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	script := filepath.Join(dir, "tree.py")
	if err := os.WriteFile(script, []byte(trackedTreeScript), 0o600); err != nil {
		t.Fatal(err)
	}
	wantOut, out := filepath.Join(dir, "want"), filepath.Join(dir, "out")
	if b, err := exec.Command("/usr/bin/python3", script, wantOut).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v: %s", err, b)
	}
	want, _ := os.ReadFile(wantOut)

	sup := exec.Command(ckptBin, "--repo", repoDir, "run", "--name", "tree", "--every", "150ms", "--backoff", "10ms", "--", "/usr/bin/python3", script, out)
	var logs lockedBuffer
	sup.Stderr = &logs
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	var j psJob
	waitFor(t, "three checkpoints that read only written pages", func() bool {
		return strings.Count(logs.String(), "written since the previous checkpoint") >= 3
	})
	j = psJobs(t, repoDir)["tree"]
	// Crash the root only: a child may outlive it, and ckpt run must
	// kill it (the restore needs its PID) before restoring.
	if err := syscall.Kill(j.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := sup.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "restart 1 of") {
		t.Fatalf("the crash was not restored:\n%s", logs.String())
	}
	if err != nil {
		t.Fatalf("ckpt run after the restore: %v\n%s", err, logs.String())
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatalf("output after a crash and restore differs from an uninterrupted run:\n%s\nwant\n%s\nckpt run said:\n%s", got, want, logs.String())
	}
}

// lockedBuffer is a bytes.Buffer an exec.Cmd writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
