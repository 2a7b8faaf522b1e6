package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/proctest"
)

func requireCgroup2(t *testing.T) {
	t.Helper()
	if _, err := container.Cgroup2Root(); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatalf("containers need cgroup v2: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// ctrOutput is what one ctr worker wrote: its lines without the PID, the
// PIDs it printed, its hostnames, and its clock summary.
type ctrOutput struct {
	lines     []string // "i value"
	pids      map[int]bool
	hosts     map[string]bool
	maxGap    time.Duration
	back      bool
	finished  bool
	rawLength int
}

func readCtr(t *testing.T, path string) ctrOutput {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o := ctrOutput{pids: map[int]bool{}, hosts: map[string]bool{}, rawLength: len(b)}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "clock" {
			us, _ := strconv.ParseInt(f[1], 10, 64)
			o.maxGap, o.back, o.finished = time.Duration(us)*time.Microsecond, f[2] == "1", true
			continue
		}
		if len(f) != 4 {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		o.lines = append(o.lines, f[0]+" "+f[1])
		o.hosts[f[2]] = true
		pid, _ := strconv.Atoi(f[3])
		o.pids[pid] = true
	}
	return o
}

func lineCount(p string) int {
	b, _ := os.ReadFile(p)
	return strings.Count(string(b), "\n")
}

// TestContainerStopResume runs a shell with two C workers as a container
// (ckpt run --isolate), stops it with SIGTERM (the whole cgroup is frozen
// and dumped, then killed), occupies the workers' PIDs in the host's PID
// namespace, waits, and resumes it with ckpt run: every worker keeps its
// PID inside the container, the hostname is kept, the output equals an
// uninterrupted run's, and CLOCK_MONOTONIC inside neither went backwards
// nor jumped by the downtime.
func TestContainerStopResume(t *testing.T) {
	requireRoot(t)
	requireCgroup2(t)
	ctr := proctest.Build(t, "ctr", false)
	hog := proctest.Build(t, "pidhog", false)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	const iters = 150
	script := func(a, b string) string {
		return fmt.Sprintf("%s %s %d & %s %s %d & wait", ctr, a, iters, ctr, b, iters)
	}
	runCtr := func(name, a, b string) *exec.Cmd {
		cmd := exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--hostname", "box1", "--", "/bin/sh", "-c", script(a, b))
		cmd.Stderr = os.Stderr
		return cmd
	}
	// An uninterrupted run.
	ref1, ref2 := filepath.Join(dir, "ref1"), filepath.Join(dir, "ref2")
	if err := runCtr("ref", ref1, ref2).Run(); err != nil {
		t.Fatalf("uninterrupted container run: %v", err)
	}
	want := []ctrOutput{readCtr(t, ref1), readCtr(t, ref2)}
	for _, w := range want {
		if !w.finished || len(w.lines) != iters || len(w.pids) != 1 || !w.hosts["box1"] || len(w.hosts) != 1 {
			t.Fatalf("uninterrupted run: %+v", w)
		}
		if w.pids[1] {
			t.Fatal("a worker is PID 1: the shell should be")
		}
	}

	out1, out2 := filepath.Join(dir, "out1"), filepath.Join(dir, "out2")
	sup := runCtr("job", out1, out2)
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "the workers to be a third through", func() bool { return lineCount(out1) > iters/3 && lineCount(out2) > iters/3 })
	if j := psJobs(t, repoDir)["job"]; j.State != "running" || j.PID == 0 {
		t.Fatalf("ckpt ps while running: %+v", j)
	}
	if r := runCkpt(t, repoDir, "ps"); !strings.Contains(r.stdout, "[container]") {
		t.Fatalf("ckpt ps does not mark the container:\n%s", r.stdout)
	}
	sup.Process.Signal(syscall.SIGTERM)
	err := sup.Wait()
	down := time.Now()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("ckpt run --isolate after SIGTERM: %v, want exit 143", err)
	}
	if j := psJobs(t, repoDir)["job"]; j.State != "stopped" || j.Checkpoints != 1 {
		t.Fatalf("job after SIGTERM: %+v", j)
	}
	before := []ctrOutput{readCtr(t, out1), readCtr(t, out2)}
	var inner []string
	for _, o := range before {
		if o.finished || len(o.pids) != 1 {
			t.Fatalf("stopped worker: finished %v, pids %v", o.finished, o.pids)
		}
		for p := range o.pids {
			inner = append(inner, strconv.Itoa(p))
		}
	}

	// The host's PIDs with the container's numbers are all taken now.
	h := exec.Command(hog, inner...)
	hout, err := h.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { h.Process.Signal(syscall.SIGTERM); h.Wait() }()
	sc := bufio.NewScanner(hout)
	for sc.Scan() && sc.Text() != "READY" {
		if strings.HasPrefix(sc.Text(), "FAIL") {
			t.Fatalf("pidhog: %s", sc.Text())
		}
		t.Logf("host PIDs: %s", sc.Text()) // "hog N" or "taken N" (already in use)
	}
	for _, p := range append(inner, "1") {
		if _, err := os.Stat("/proc/" + p); err != nil {
			t.Fatalf("host PID %s is not occupied: %v", p, err)
		}
	}
	// Downtime, so a clock that jumped by it would show.
	const pause = 1500 * time.Millisecond
	time.Sleep(pause - time.Since(down))
	downtime := time.Since(down)

	if err := runCtr("job", out1, out2).Run(); err != nil {
		t.Fatalf("resumed container run: %v", err)
	}
	if j := psJobs(t, repoDir)["job"]; j.State != "done" {
		t.Fatalf("job at the end: %+v", j)
	}
	for i, p := range []string{out1, out2} {
		got := readCtr(t, p)
		if strings.Join(got.lines, "\n") != strings.Join(want[i].lines, "\n") || !got.finished {
			t.Fatalf("%s differs from an uninterrupted run (%d lines, finished %v)", p, len(got.lines), got.finished)
		}
		if len(got.pids) != 1 || !got.pids[firstKey(before[i].pids)] {
			t.Fatalf("%s: the worker's PID inside the container changed: before %v, all %v", p, before[i].pids, got.pids)
		}
		if len(got.hosts) != 1 || !got.hosts["box1"] {
			t.Fatalf("%s: hostnames %v, want only box1", p, got.hosts)
		}
		if got.back {
			t.Fatalf("%s: CLOCK_MONOTONIC went backwards inside the container", p)
		}
		// The clocks go on from the dump: the largest step is a sleep
		// plus the freeze, far below the downtime.
		if got.maxGap >= downtime || got.maxGap > time.Second {
			t.Fatalf("%s: CLOCK_MONOTONIC jumped by %v across a downtime of %v", p, got.maxGap, downtime)
		}
		t.Logf("%s: largest monotonic step %v across a downtime of %v", p, got.maxGap, downtime)
	}
}

func firstKey(m map[int]bool) int {
	for k := range m {
		return k
	}
	return 0
}
