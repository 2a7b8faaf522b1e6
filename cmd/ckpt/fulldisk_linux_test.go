package main

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// mountSmall mounts a tmpfs of size (e.g. "16m") in a new directory.
func mountSmall(t *testing.T, size string) string {
	t.Helper()
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mounting a %s tmpfs: %v", size, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(small, syscall.MNT_DETACH) })
	return small
}

// TestRunFullDisk: under ckpt run, checkpoints that find the disk full
// fail, say so plainly once (then briefly), and the program runs on to its
// end.
func TestRunFullDisk(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	repoDir := filepath.Join(mountSmall(t, "16m"), "repo")
	wantCode(t, runCkpt(t, repoDir, "init"), exitOK, "init")
	r := runCkpt(t, repoDir, "run", "--name", "grow", "--every", "100ms", "--", "/usr/bin/python3", "-c", `import os, sys, time
blobs = [os.urandom(4 << 20)]
time.sleep(0.6)
blobs.append(os.urandom(40 << 20))
time.sleep(1.2)
print("done", flush=True)
`)
	if r.code != exitOK || r.stdout != "done\n" {
		t.Fatalf("ckpt run: exit %d, stdout %q; want 0 and the program's \"done\"; it said:\n%s", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stderr, "the repository's disk is full;"); n != 1 || !strings.Contains(r.stderr, "disk is still full") {
		t.Errorf("ckpt run said the disk was full %d times in full, want once, then briefly:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stderr, "checkpoint grow@1") {
		t.Errorf("no checkpoint before the disk filled:\n%s", r.stderr)
	}
}

// TestDumpFullDisk dumps into a repository on a 16 MiB tmpfs: a first
// checkpoint fits, the second (the program grew by 40 MiB) does not. The
// failed dump says the disk is full and where, leaves no partial chunk or
// manifest behind, the program runs on, and the first checkpoint still
// verifies and restores.
func TestDumpFullDisk(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	repoDir := filepath.Join(mountSmall(t, "16m"), "repo")
	wantCode(t, runCkpt(t, repoDir, "init"), exitOK, "init")

	prog := exec.Command("/usr/bin/python3", "-c", `import os, sys
blobs = [os.urandom(4 << 20)]
print("READY", flush=True)
for line in sys.stdin:
    blobs.append(os.urandom(40 << 20))
    print("GROWN", flush=True)
`)
	in, err := prog.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := prog.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prog.Process.Kill(); _ = prog.Wait() }()
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("python3 said %q, want %q", lines.Text(), want)
		}
	}
	expect("READY")
	pid := strconv.Itoa(prog.Process.Pid)
	wantCode(t, runCkpt(t, repoDir, "dump", "--leave-running", "--name", "grow", pid), exitOK, "the first dump")

	if _, err := in.Write([]byte("grow\n")); err != nil {
		t.Fatal(err)
	}
	expect("GROWN")
	r := runCkpt(t, repoDir, "dump", "--leave-running", "--name", "grow", pid)
	if r.code == exitOK || !strings.HasPrefix(r.stderr, "ckpt: no space left on device: ") || !strings.Contains(r.stderr, repoDir) {
		t.Fatalf("dump into a full disk: exit %d, %q; want a failure naming the disk full and the repository", r.code, r.stderr)
	}
	t.Logf("the failed dump said: %s", strings.TrimSpace(r.stderr))

	// The program was left running, unharmed.
	if _, err := in.Write([]byte("grow\n")); err != nil {
		t.Fatal(err)
	}
	expect("GROWN")
	// Nothing of the failed checkpoint is left: no temporary file, one
	// checkpoint listed, and it verifies.
	_ = filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
	if r := runCkpt(t, repoDir, "ls"); strings.Count(r.stdout, "grow@") != 1 || !strings.Contains(r.stdout, "grow@1") {
		t.Errorf("ls after the failed dump:\n%s\nwant grow@1 alone", r.stdout)
	}
	wantCode(t, runCkpt(t, repoDir, "verify"), exitOK, "verify after the failed dump")

	// And it restores: the program, back at its first checkpoint, reads
	// the restorer's stdin (empty) and exits normally.
	_ = prog.Process.Kill()
	_ = prog.Wait()
	wantCode(t, runCkpt(t, repoDir, "restore", "grow@1"), exitOK, "restore of the checkpoint before the full disk")
}
