package proccr_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
)

// startFixture builds and starts the C fixture name with args, waits for
// its READY line, and returns it with that line and a new repository in a
// local directory (as root: the tests here need ptrace).
func startFixture(t *testing.T, name string, args ...string) (*repo.Repository, *proctest.Proc, string) {
	t.Helper()
	proctest.RequireRoot(t)
	r, err := repo.InitDir(context.Background(), t.TempDir()+"/repo", repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := proctest.Start(t, proctest.Build(t, name, false), args...)
	return r, p, p.Lines.Expect(t, "READY")
}

// TestPreCopyExact: a process keeps rewriting random pages (10 % of them a
// second) with a checksum per page while it is pre-copied; the dump
// --leave-running reads only the written pages while frozen, and a restore
// of the checkpoint is byte-exact: the restored process finds every page
// matching its checksum.
func TestPreCopyExact(t *testing.T) {
	proctest.RequireRoot(t)
	ctx := context.Background()
	r, err := repo.Init(ctx, backend.NewMem(), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bin := proctest.Build(t, "dirtier", false)
	p := proctest.Start(t, bin, "64", "100")
	ready := p.Lines.Expect(t, "READY")
	res, err := proccr.Dump(ctx, r, p.PID, proccr.DumpOptions{Name: "dirtier", LeaveRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.PreCopyNote != "" || res.PreCopied < 64<<20 {
		t.Fatalf("no pre-copy: %q, %d bytes pre-copied", res.PreCopyNote, res.PreCopied)
	}
	st := res.Stats
	t.Logf("pre-copied %d MiB (arm stop %v), frozen %v, %d MiB of memory, reused %d MiB, new %d MiB",
		res.PreCopied>>20, res.ArmStop, res.Frozen, st.Bytes>>20, st.ReusedBytes>>20, st.NewBytes>>20)
	if st.ReusedBytes < st.Bytes*8/10 {
		t.Errorf("the frozen pass reused only %d of %d bytes from the pre-copy", st.ReusedBytes, st.Bytes)
	}
	if res.Frozen <= 0 {
		t.Error("frozen time not measured")
	}
	ms, _, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Meta[proccr.MetaPreCopy] != "" {
		t.Errorf("after the dump the repository holds %d checkpoints (the pre-copy must be removed)", len(ms))
	}
	if s := proctest.State(p.PID); s == 't' || s == 'T' {
		t.Errorf("process left stopped (%c)", s)
	}
	fds, _ := os.ReadDir("/proc/" + strings.Fields(ready)[1] + "/fd")
	for _, e := range fds {
		if l, _ := os.Readlink("/proc/" + strings.Fields(ready)[1] + "/fd/" + e.Name()); strings.Contains(l, "userfaultfd") {
			t.Errorf("userfaultfd left in the process as fd %s", e.Name())
		}
	}
	p.KillAndReap(t)

	expectRestoredPass(t, r, res.Manifest, ready)
}

// TestIncrementalExact: a process rewriting 10 % of its pages a second is
// dumped twice with --leave-running --no-pre-copy into a local repository;
// the second dump compares every page with the first's block hashes (read
// and hashed on every CPU) and stores only what changed, and a restore of
// it (chunks read, verified and written by parallel workers) is
// byte-exact: the restored process finds every page matching its checksum.
func TestIncrementalExact(t *testing.T) {
	ctx := context.Background()
	r, p, ready := startFixture(t, "dirtier", "64", "100")
	opts := proccr.DumpOptions{Name: "dirtier", LeaveRunning: true, NoPreCopy: true}
	first, err := proccr.Dump(ctx, r, p.PID, opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := proccr.Dump(ctx, r, p.PID, opts)
	if err != nil {
		t.Fatal(err)
	}
	st := second.Stats
	t.Logf("first dump stored %d MiB; second: %d MiB of memory, reused %d MiB, stored %d KiB",
		first.Stats.StoredBytes>>20, st.Bytes>>20, st.ReusedBytes>>20, st.StoredBytes>>10)
	if st.ReusedBytes < st.Bytes/2 || st.StoredBytes >= first.Stats.StoredBytes/2 {
		t.Errorf("second dump reused %d of %d bytes and stored %d (first %d)", st.ReusedBytes, st.Bytes, st.StoredBytes, first.Stats.StoredBytes)
	}
	if s := proctest.State(p.PID); s == 't' || s == 'T' {
		t.Errorf("process left stopped (%c)", s)
	}
	before := anonMaps(t, p.PID)
	p.KillAndReap(t)

	sr, sw, _ := os.Pipe()
	rres, err := proccr.Restore(ctx, r, second.Manifest, restore.Options{Stdout: sw, Stderr: sw}, nil)
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rres.Signal(syscall.SIGKILL); _, _ = rres.Wait() }()
	// The anonymous memory was placed with a userfaultfd: none is left
	// registered or open, and the anonymous mappings read as before.
	if after := anonMaps(t, rres.Root); after != before {
		t.Errorf("anonymous mappings differ after the restore:\n%s\nwas\n%s", after, before)
	}
	smaps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", rres.Root))
	for _, l := range strings.Split(string(smaps), "\n") {
		if strings.HasPrefix(l, "VmFlags:") && strings.Contains(l+" ", " um ") {
			t.Errorf("a mapping is still registered with a userfaultfd: %s", l)
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", rres.Root))
	for _, e := range fds {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", rres.Root, e.Name())); strings.Contains(l, "userfaultfd") {
			t.Errorf("userfaultfd left in the restored process as fd %s", e.Name())
		}
	}
	_ = rres.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Fatalf("restored process: %q", got)
	}
}

// anonMaps returns the lines of /proc/PID/maps of anonymous mappings
// (no path), addresses and permissions only.
func anonMaps(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 5 {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return strings.Join(out, "\n")
}

// TestTrackingAcrossDumps: a process keeps rewriting random pages (10 % of
// them a second) with a checksum per page while ckpt run's way of dumping
// checkpoints it three times with one Tracking: the first dump pre-copies
// and arms the trackers, the next two read only what was written since the
// previous checkpoint, and a restore of the last is byte-exact (every
// page matches its checksum, so no written page was missed).
func TestTrackingAcrossDumps(t *testing.T) {
	ctx := context.Background()
	r, p, ready := startFixture(t, "dirtier", "64", "100")
	track := proccr.NewTracking()
	defer track.Close()
	opts := proccr.DumpOptions{Name: "dirtier", LeaveRunning: true, Tracking: track}
	first, err := proccr.Dump(ctx, r, p.PID, opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.Tracked || first.PreCopied < 64<<20 {
		t.Fatalf("first dump: tracked %v, pre-copied %d bytes (%s)", first.Tracked, first.PreCopied, first.PreCopyNote)
	}
	last := first
	for i := 2; i <= 3; i++ {
		// Let some pages be rewritten: the process works a little.
		before := proctest.CPUTime(t, p.PID)
		for proctest.CPUTime(t, p.PID)-before < 10*time.Millisecond {
			time.Sleep(10 * time.Millisecond)
		}
		res, err := proccr.Dump(ctx, r, p.PID, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("dump %d: read %d KiB, unchanged %d MiB, frozen %v, stored %d KiB", i, res.Read>>10, res.Unchanged>>20, res.Frozen, res.Stats.StoredBytes>>10)
		if !res.Tracked || res.PreCopied != 0 {
			t.Fatalf("dump %d did not use the tracking (tracked %v, pre-copied %d)", i, res.Tracked, res.PreCopied)
		}
		if res.Read == 0 || res.Read > 32<<20 || res.Unchanged < 32<<20 {
			t.Errorf("dump %d read %d bytes and found %d unchanged of 64 MiB rewritten at 10 %%/s", i, res.Read, res.Unchanged)
		}
		if res.Manifest.Parent != last.Manifest.ID() {
			t.Errorf("dump %d's parent is %.12s, not the previous checkpoint %.12s", i, res.Manifest.Parent, last.Manifest.ID())
		}
		last = res
	}
	p.KillAndReap(t)

	expectRestoredPass(t, r, last.Manifest, ready)
}

// TestTrackedPreCopy: a process rewrites its whole memory once a second,
// with a checksum per page; after a first dump with kept trackers it has
// overwritten more than trackedPreCopyAbove of it, so the next dump copies
// what was written while the process runs (the rest declared unchanged
// from the first checkpoint) and reads only what is written during that
// copy while frozen. The restored process finds every page matching its
// checksum, and the pre-copy checkpoint is gone.
func TestTrackedPreCopy(t *testing.T) {
	ctx := context.Background()
	r, p, ready := startFixture(t, "dirtier", "128", "1000")
	track := proccr.NewTracking()
	defer track.Close()
	opts := proccr.DumpOptions{Name: "dirtier", LeaveRunning: true, Tracking: track}
	first, err := proccr.Dump(ctx, r, p.PID, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Rewriting pages at random, ~150 ms of its CPU overwrite well over
	// half of the 128 MiB (64 MiB is the pre-copy threshold).
	before := proctest.CPUTime(t, p.PID)
	for proctest.CPUTime(t, p.PID)-before < 150*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
	}
	res, err := proccr.Dump(ctx, r, p.PID, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second dump: copied %d MiB while running, read %d MiB while frozen (%v), %d MiB unchanged", res.PreCopied>>20, res.Read>>20, res.Frozen, res.Unchanged>>20)
	if !res.Tracked || res.PreCopied < 64<<20 || res.PreCopyNote != "" {
		t.Fatalf("second dump: tracked %v, copied %d bytes while running (%s)", res.Tracked, res.PreCopied, res.PreCopyNote)
	}
	if res.Read >= res.PreCopied {
		t.Errorf("read %d bytes while frozen after copying %d", res.Read, res.PreCopied)
	}
	ms, _, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Errorf("the repository holds %d checkpoints after two dumps (a pre-copy left?)", len(ms))
	}
	if res.Manifest.ID() == first.Manifest.ID() {
		t.Fatal("no new checkpoint")
	}
	p.KillAndReap(t)

	expectRestoredPass(t, r, res.Manifest, ready)
}

// thpScript keeps 16 MiB advised for transparent huge pages, rewrites all
// of it on each input line and says how much of it is in huge pages.
const thpScript = `import mmap, sys
m = mmap.mmap(-1, 16 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_HUGEPAGE)
def huge():
    start = None
    for l in open("/proc/self/smaps"):
        f = l.split()
        if "-" in f[0] and not f[0].endswith(":"):
            start = f[0]
        elif f[0] == "AnonHugePages:" and int(f[1]) >= 4096:
            return int(f[1])
    return 0
def rewrite(v):
    for i in range(0, len(m), 4096):
        m[i] = v
rewrite(1)
print("READY", huge(), flush=True)
for n, line in enumerate(sys.stdin):
    rewrite(n + 2)
    print("HUGE", huge(), flush=True)
`

// TestTrackingSparesHugePages: kept trackers leave memory with transparent
// huge pages alone, so the program's writes after a checkpoint do not
// split its huge pages.
func TestTrackingSparesHugePages(t *testing.T) {
	proctest.RequireRoot(t)
	ctx := context.Background()
	r, err := repo.Init(ctx, backend.NewMem(), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", "-c", thpScript)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	rd, w, _ := os.Pipe()
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := proctest.NewLines(rd)
	if f := strings.Fields(lines.Expect(t, "READY")); f[1] == "0" {
		t.Skip("no transparent huge pages here (THP off or memory fragmented)")
	}
	track := proccr.NewTracking()
	defer track.Close()
	for i := 1; i <= 2; i++ {
		if _, err := proccr.Dump(ctx, r, cmd.Process.Pid, proccr.DumpOptions{Name: "thp", LeaveRunning: true, Tracking: track}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(in, "rewrite\n"); err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(lines.Expect(t, "HUGE")); f[1] == "0" {
			t.Fatalf("after checkpoint %d, rewriting the memory split its huge pages", i)
		}
	}
}

// deletedMapScript maps a deleted file privately (not written through
// the mapping) and, on SIGUSR1, writes other bytes into the file with
// pwrite: the mapping then shows them although no page of it was written.
const deletedMapScript = `import os, mmap, sys, signal, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, b"A" * 4096)
os.unlink(sys.argv[1])
m = mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
x = m[0]
def usr1(s, f):
    os.pwrite(fd, b"B" * 4096, 0)
    print("WROTE", flush=True)
def usr2(s, f):
    print("SHOW map=%s file=%s" % (chr(m[0]), chr(os.pread(fd, 1, 0)[0])), flush=True)
signal.signal(signal.SIGUSR1, usr1)
signal.signal(signal.SIGUSR2, usr2)
print("READY", flush=True)
while True:
    time.sleep(0.01)
`

// TestTrackingDeletedFileMapping: a kept tracker cannot see a change of a
// deleted file's bytes under a private mapping of it (pwrite to the file),
// so such pages are read at every checkpoint, never declared unchanged:
// the restored process sees the file's new bytes through the mapping, as
// the dumped one did.
func TestTrackingDeletedFileMapping(t *testing.T) {
	proctest.RequireRoot(t)
	ctx := context.Background()
	r, err := repo.InitDir(ctx, t.TempDir()+"/repo", repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rd, wr, _ := os.Pipe()
	cmd := exec.Command("/usr/bin/python3", "-c", deletedMapScript, t.TempDir()+"/deleted")
	cmd.Stdout = wr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := proctest.NewLines(rd)
	lines.Expect(t, "READY")
	track := proccr.NewTracking()
	defer track.Close()
	opts := proccr.DumpOptions{Name: "del", LeaveRunning: true, Tracking: track}
	if _, err := proccr.Dump(ctx, r, cmd.Process.Pid, opts); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGUSR1)
	lines.Expect(t, "WROTE")
	_ = cmd.Process.Signal(syscall.SIGUSR2)
	if live := lines.Expect(t, "SHOW"); live != "SHOW map=B file=B" {
		t.Fatalf("live process: %q", live)
	}
	res, err := proccr.Dump(ctx, r, cmd.Process.Pid, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Tracked {
		t.Fatal("the second dump did not use the trackers")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	sr, sw, _ := os.Pipe()
	rres, err := proccr.Restore(ctx, r, res.Manifest, restore.Options{Stdout: sw, Stderr: sw}, nil)
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rres.Signal(syscall.SIGKILL); _, _ = rres.Wait() }()
	_ = rres.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "SHOW"); got != "SHOW map=B file=B" {
		t.Errorf("restored process: %q, want the file's new bytes through the mapping", got)
	}
}

// expectRestoredPass restores a dirtier checkpoint and has the restored
// process check every page against its checksum: it must print PASS with
// the nonce of the dumped process's READY line.
func expectRestoredPass(t *testing.T, r *repo.Repository, m *repo.Manifest, ready string) {
	t.Helper()
	sr, sw, _ := os.Pipe()
	rres, err := proccr.Restore(context.Background(), r, m, restore.Options{Stdout: sw, Stderr: sw}, nil)
	sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rres.Signal(syscall.SIGKILL); _, _ = rres.Wait() }()
	_ = rres.Signal(syscall.SIGUSR2)
	if got := proctest.NewLines(sr).Expect(t, "PASS"); !strings.HasSuffix(got, strings.Fields(ready)[2]) {
		t.Fatalf("restored process: %q", got)
	}
}

// TestTrackedSkipsUntouched: a process that reserved 2 GiB and wrote
// 4 MiB (a JVM, a Go runtime) gets checkpoints of a few MiB, tracked or
// not: pages never populated (which a write tracker marks) and pages that
// only map the zero page are not read, and restore as zeros.
func TestTrackedSkipsUntouched(t *testing.T) {
	ctx := context.Background()
	r, p, ready := startFixture(t, "reserve")
	track := proccr.NewTracking()
	defer track.Close()
	opts := proccr.DumpOptions{Name: "reserve", LeaveRunning: true, Tracking: track}
	var res *proccr.DumpResult
	for i := 1; i <= 2; i++ {
		var err error
		if res, err = proccr.Dump(ctx, r, p.PID, opts); err != nil {
			t.Fatal(err)
		}
		t.Logf("dump %d: %d MiB of memory, %d MiB pre-copied, tracked %v", i, res.Stats.Bytes>>20, res.PreCopied>>20, res.Tracked)
		if res.Stats.Bytes > 32<<20 || res.PreCopied > 32<<20 {
			t.Fatalf("dump %d of a process with 4 MiB written holds %d MiB (%d MiB pre-copied)", i, res.Stats.Bytes>>20, res.PreCopied>>20)
		}
	}
	p.KillAndReap(t)
	expectRestoredPass(t, r, res.Manifest, ready)
}
