package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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

// requireCgroup2 skips (or fails under CKPT_REQUIRE_ROOT=1) without cgroup
// v2, and makes sure no container of the given names outlives the test
// (a failed test kills ckpt run, not its container).
func requireCgroup2(t *testing.T, names ...string) {
	t.Helper()
	if _, err := container.Cgroup2Root(); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatalf("containers need cgroup v2: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	t.Cleanup(func() {
		for _, n := range names {
			cg, err := container.CgroupFor(n)
			if err != nil {
				continue
			}
			if _, err := os.Stat(cg.Dir); err != nil {
				continue
			}
			cg.Kill()
			if err := cg.Create(5 * time.Second); err != nil { // waits until empty
				t.Errorf("cleaning up container %s: %v", n, err)
			}
			cg.Remove()
		}
	})
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
	// Container names are host-wide (cgroup ckpt/NAME): unique per test run.
	refName, jobName := fmt.Sprintf("ref-%d", os.Getpid()), fmt.Sprintf("job-%d", os.Getpid())
	requireCgroup2(t, refName, jobName)
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
	if err := runCtr(refName, ref1, ref2).Run(); err != nil {
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
	sup := runCtr(jobName, out1, out2)
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "the workers to be a third through", func() bool { return lineCount(out1) > iters/3 && lineCount(out2) > iters/3 })
	if j := psJobs(t, repoDir)[jobName]; j.State != "running" || j.PID == 0 {
		t.Fatalf("ckpt ps while running: %+v", j)
	}
	if r := runCkpt(t, repoDir, "ps"); !strings.Contains(r.stdout, "[container]") {
		t.Fatalf("ckpt ps does not mark the container:\n%s", r.stdout)
	}
	stopRun(t, sup, "ckpt run --isolate")
	down := time.Now()
	if j := psJobs(t, repoDir)[jobName]; j.State != "stopped" || j.Checkpoints != 1 {
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

	if err := runCtr(jobName, out1, out2).Run(); err != nil {
		t.Fatalf("resumed container run: %v", err)
	}
	if j := psJobs(t, repoDir)[jobName]; j.State != "done" {
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

// TestContainerVeth gives a container a veth pair (--veth), stops it with
// SIGTERM and resumes it: the pair is made again with the saved addresses
// on both ends, and a TCP connection from the host reaches an address
// inside the restored container.
func TestContainerVeth(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("vt-%d", os.Getpid())
	requireCgroup2(t, name)
	requireTool(t, "/usr/sbin/ip")
	requireTool(t, "/usr/bin/nsenter")
	requireTool(t, "/usr/bin/python3")
	dir := t.TempDir()
	repoDir, stop := filepath.Join(dir, "repo"), filepath.Join(dir, "stop")
	const hostAddr, ctrAddr = "10.231.77.1/24", "10.231.77.2/24"
	run := func() *exec.Cmd {
		cmd := exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--veth", hostAddr+","+ctrAddr,
			"--", "/bin/sh", "-c", "while [ ! -e "+stop+" ]; do sleep 0.05; done")
		cmd.Stderr = os.Stderr
		return cmd
	}
	veth, err := container.ParseVeth(name, hostAddr+","+ctrAddr)
	if err != nil {
		t.Fatal(err)
	}
	// check waits for the container (init host PID) to have its addresses
	// on both ends, then connects from the host to a listener inside.
	check := func(pid int) {
		t.Helper()
		waitFor(t, "the host end "+veth.Peer+" with "+hostAddr, func() bool {
			out, _ := exec.Command("ip", "-o", "addr", "show", "dev", veth.Peer).Output()
			return strings.Contains(string(out), hostAddr)
		})
		out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", "ip", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), ctrAddr) {
			t.Fatalf("eth0 inside the container: %v\n%s", err, out)
		}
		srv := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", "python3", "-c", `
import socket
s = socket.socket(); s.bind(("10.231.77.2", 7771)); s.listen(); print("LISTEN", flush=True)
c, _ = s.accept(); c.sendall(b"inside\n"); c.close()`)
		so, _ := srv.StdoutPipe()
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer srv.Wait()
		rd := bufio.NewReader(so)
		if l, _ := rd.ReadString('\n'); l != "LISTEN\n" {
			srv.Process.Kill()
			t.Fatalf("listener in the container: %q", l)
		}
		got, err := exec.Command("python3", "-c", `
import socket
c = socket.create_connection(("10.231.77.2", 7771), timeout=10); print(c.recv(100).decode(), end="")`).CombinedOutput()
		if err != nil || string(got) != "inside\n" {
			srv.Process.Kill()
			t.Fatalf("TCP from the host to the container: %v %q", err, got)
		}
	}
	sup := run()
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	var j psJob
	waitFor(t, "the container to run", func() bool { j = psJobs(t, repoDir)[name]; return j.State == "running" && j.PID != 0 })
	check(j.PID)
	stopRun(t, sup, "ckpt run --isolate --veth")
	sup = run()
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "the container to be restored", func() bool {
		n := psJobs(t, repoDir)[name]
		if n.State == "running" && n.PID != 0 && n.PID != j.PID {
			j = n
			return true
		}
		return false
	})
	check(j.PID)
	os.WriteFile(stop, nil, 0o600)
	if err := sup.Wait(); err != nil {
		t.Fatalf("resumed container: %v", err)
	}
	if n := psJobs(t, repoDir)[name]; n.State != "done" {
		t.Fatalf("job at the end: %+v", n)
	}
}

// TestContainerCrashRestore kills a container's PID 1 (which takes the
// whole PID namespace with it) after a checkpoint: ckpt run restores the
// container by itself, once the dying processes have left the cgroup, and
// the worker ends with the output of an uninterrupted run and one PID.
func TestContainerCrashRestore(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("crash-%d", os.Getpid())
	requireCgroup2(t, name)
	ctr := proctest.Build(t, "ctr", false)
	dir := t.TempDir()
	repoDir, out := filepath.Join(dir, "repo"), filepath.Join(dir, "out")
	const iters = 120
	sup := exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--backoff", "10ms",
		"--", "/bin/sh", "-c", fmt.Sprintf("%s %s %d & wait", ctr, out, iters))
	var log lockedBuffer
	sup.Stderr = io.MultiWriter(os.Stderr, &log)
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "the worker to be a quarter through", func() bool { return lineCount(out) > iters/4 })
	sup.Process.Signal(syscall.SIGUSR1)
	var j psJob
	waitFor(t, "a checkpoint", func() bool { j = psJobs(t, repoDir)[name]; return j.Checkpoints == 1 })
	waitFor(t, "more output after the checkpoint", func() bool { return lineCount(out) > iters/2 })
	if err := syscall.Kill(j.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := sup.Wait(); err != nil {
		t.Fatalf("ckpt run after the crash: %v", err)
	}
	if j = psJobs(t, repoDir)[name]; j.State != "done" || j.Restarts != 1 {
		t.Fatalf("job at the end: %+v", j)
	}
	// The SIGUSR1 checkpoint copied memory while the container ran and
	// froze the cgroup only for what was written since.
	if !strings.Contains(log.String(), "after a pre-copy of") {
		t.Fatalf("the checkpoint of the running container had no pre-copy:\n%s", log.String())
	}
	got := readCtr(t, out)
	var want []string
	x := uint64(7)
	for i := 0; i < iters; i++ {
		x = x * 48271 % 2147483647
		want = append(want, fmt.Sprintf("%d %d", i, x))
	}
	if strings.Join(got.lines, "\n") != strings.Join(want, "\n") || !got.finished {
		t.Fatalf("output after the crash and restore differs from an uninterrupted run (%d lines)", len(got.lines))
	}
	if len(got.pids) != 1 || len(got.hosts) != 1 || !got.hosts[name] || got.back {
		t.Fatalf("after the restore: pids %v, hostnames %v, clock backwards %v", got.pids, got.hosts, got.back)
	}
}

// TestContainerTCP stops and resumes a container whose server talks to a
// client on the host over the container's veth: the server's listening
// socket, its accepted connection (TCP repair) and a unix socketpair are
// dumped from inside the container's network namespace and recreated in
// the new one, and the client, which never reconnects, receives every line
// exactly once and in order.
func TestContainerTCP(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	requireTool(t, "/usr/sbin/ip")
	name := fmt.Sprintf("tcp-%d", os.Getpid())
	requireCgroup2(t, name)
	dir := t.TempDir()
	repoDir, srv, out := filepath.Join(dir, "repo"), filepath.Join(dir, "srv.py"), filepath.Join(dir, "out")
	const lines = 60
	os.WriteFile(srv, []byte(fmt.Sprintf(`import socket, sys, time
a, b = socket.socketpair()
l = socket.socket(); l.bind(("10.231.78.2", 5555)); l.listen()
c, _ = l.accept()
out = open(sys.argv[1], "w")
for i in range(%d):
    a.send(b"x"); assert b.recv(1) == b"x"
    c.sendall(b"%%d\n" %% i)
    out.write("%%d\n" %% i); out.flush()
    time.sleep(0.02)
c.close()
`, lines)), 0o600)
	run := func() *exec.Cmd {
		cmd := exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--veth", "10.231.78.1/24,10.231.78.2/24",
			"--", "/usr/bin/python3", srv, out)
		cmd.Stderr = os.Stderr
		return cmd
	}
	sup := run()
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	// Before the veth is there, 10.231.78.2 would be routed out of the
	// machine (where a proxy may well answer).
	veth, err := container.ParseVeth(name, "10.231.78.1/24,10.231.78.2/24")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the host end of the veth", func() bool {
		b, _ := exec.Command("ip", "-o", "addr", "show", "dev", veth.Peer).Output()
		return strings.Contains(string(b), "10.231.78.1/24")
	})
	// The client: connects once (retrying until the server listens) and
	// reads to the end.
	client := exec.Command("/usr/bin/python3", "-c", `
import socket, sys, time
for i in range(600):
    try:
        c = socket.create_connection(("10.231.78.2", 5555), timeout=60); break
    except OSError:
        time.sleep(0.05)
sys.stdout.write(c.makefile().read())`)
	var got strings.Builder
	client.Stdout, client.Stderr = &got, os.Stderr
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Process.Kill()
	waitFor(t, "the server to be a third through", func() bool { return lineCount(out) > lines/3 })
	stopRun(t, sup, "ckpt run")
	if lineCount(out) >= lines {
		t.Fatal("the server finished before the checkpoint: nothing was tested")
	}
	if err := run().Run(); err != nil {
		t.Fatalf("resumed container: %v", err)
	}
	if err := client.Wait(); err != nil {
		t.Fatalf("client: %v", err)
	}
	var want strings.Builder
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if got.String() != want.String() {
		t.Fatalf("the client received %q, want 0..%d once each", got.String(), lines-1)
	}
}

// TestContainerThreads stops and resumes a container whose program has
// five threads (futex waits, a spinner, TLS, alternate stacks, a robust
// mutex; testdata/cprog/threads.c): every thread comes back with its TID
// inside the container and the program checks its state and passes.
func TestContainerThreads(t *testing.T) {
	containerFixture(t, "threads", 6)
}

// TestContainerSysVIPC does the same with System V semaphores (one taken
// with SEM_UNDO) and a message queue, and a child blocked in semop and
// msgrcv (testdata/cprog/sysvipc.c), in the container's IPC namespace.
func TestContainerSysVIPC(t *testing.T) {
	containerFixture(t, "sysvipc", 1, "0x4b5a5a5a")
}

// TestContainerShm does the same with memory shared between a parent and
// its child (testdata/cprog/shm.c): MAP_SHARED anonymous memory, a memfd,
// POSIX shm and two System V segments, which live in the container's IPC
// namespace: the dump reads them from a thread that joined it, the
// restore creates a new IPC namespace and the segments inside it.
func TestContainerShm(t *testing.T) {
	containerFixture(t, "shm", 1)
}

// containerFixture runs a READY/SIGUSR2/PASS fixture as a container's
// PID 1, stops the container, resumes it, checks the root is PID 1 inside
// with tasks threads, and lets the fixture check itself.
func containerFixture(t *testing.T, fixture string, tasks int, args ...string) {
	requireRoot(t)
	name := fmt.Sprintf("%s-%d", fixture, os.Getpid())
	requireCgroup2(t, name)
	prog := proctest.Build(t, fixture, false)
	dir := t.TempDir()
	repoDir, out := filepath.Join(dir, "repo"), filepath.Join(dir, "out")
	o, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	run := func() *exec.Cmd {
		cmd := exec.Command(ckptBin, append([]string{"--repo", repoDir, "run", "--isolate", "--name", name, "--", prog}, args...)...)
		cmd.Stdout, cmd.Stderr = o, os.Stderr
		return cmd
	}
	sup := run()
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "READY", func() bool { b, _ := os.ReadFile(out); return strings.Contains(string(b), "READY") })
	stopRun(t, sup, "ckpt run")
	sup = run()
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	var j psJob
	waitFor(t, "the restore", func() bool { j = psJobs(t, repoDir)[name]; return j.State == "running" && j.PID != 0 })
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", j.PID))
	if err != nil || !strings.Contains(string(b), "NSpid:\t"+strconv.Itoa(j.PID)+"\t1\n") {
		t.Fatalf("restored root: %v\n%s", err, b)
	}
	// Restored into the container's cgroup, so the next checkpoint can
	// freeze it.
	cg, _ := container.CgroupFor(name)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", j.PID)); err != nil || !strings.Contains(string(b), "0::"+strings.TrimPrefix(cg.Dir, filepath.Dir(filepath.Dir(cg.Dir)))+"\n") {
		t.Fatalf("restored root is not in %s: %v\n%s", cg.Dir, err, b)
	}
	if ts, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", j.PID)); len(ts) != tasks {
		t.Fatalf("restored program has %d threads, want %d", len(ts), tasks)
	}
	syscall.Kill(j.PID, syscall.SIGUSR2)
	if err := sup.Wait(); err != nil {
		got, _ := os.ReadFile(out)
		t.Fatalf("resumed container: %v; program output:\n%s", err, got)
	}
	got, _ := os.ReadFile(out)
	if strings.Count(string(got), "PASS") != 1 || strings.Contains(string(got), "FAIL") {
		t.Fatalf("program output:\n%s", got)
	}
}

// TestContainerRestoreRefused resumes a stopped container whose program
// file changed since the checkpoint: the restore is refused with a message
// naming the file, and nothing is left behind: no process in the
// container's cgroup, no veth host end, the job not running.
func TestContainerRestoreRefused(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/sbin/ip")
	name := fmt.Sprintf("bad-%d", os.Getpid())
	requireCgroup2(t, name)
	dir := t.TempDir()
	prog := filepath.Join(dir, "ctr")
	b, err := os.ReadFile(proctest.Build(t, "ctr", false))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(prog, b, 0o755)
	repoDir, out := filepath.Join(dir, "repo"), filepath.Join(dir, "out")
	run := func() *exec.Cmd {
		return exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--veth", "10.231.79.1/24,10.231.79.2/24",
			"--", prog, out, "100000")
	}
	sup := run()
	sup.Stderr = os.Stderr
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "the program to run", func() bool { return lineCount(out) > 5 })
	stopRun(t, sup, "ckpt run")
	// Rebuilt in place: same path, other contents.
	os.WriteFile(prog, append(b, 0), 0o755)
	res := run()
	msg, err := res.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 125 || !strings.Contains(string(msg), prog) {
		t.Fatalf("resume with a changed program: %v, want exit 125 and a message naming %s:\n%s", err, prog, msg)
	}
	t.Logf("refused: %s", strings.TrimSpace(string(msg)))
	cg, _ := container.CgroupFor(name)
	if pids, err := cg.Procs(); err == nil && len(pids) > 0 {
		t.Fatalf("processes %v left in the container's cgroup", pids)
	}
	veth, _ := container.ParseVeth(name, "10.231.79.1/24,10.231.79.2/24")
	waitFor(t, "the veth host end to go with its namespace", func() bool {
		return exec.Command("ip", "link", "show", "dev", veth.Peer).Run() != nil
	})
	if j := psJobs(t, repoDir)[name]; j.State == "running" {
		t.Fatalf("job after the refused restore: %+v", j)
	}
}

// TestContainerIntruder moves a host process into a running container's
// cgroup: it does not descend from the container's PID 1, so a checkpoint
// would miss it; the checkpoint is refused with a message naming it, and
// the container runs on, thawed.
func TestContainerIntruder(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("intr-%d", os.Getpid())
	requireCgroup2(t, name)
	ctr := proctest.Build(t, "ctr", false)
	dir := t.TempDir()
	repoDir, out := filepath.Join(dir, "repo"), filepath.Join(dir, "out")
	sup := exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--", ctr, out, "100000")
	var log lockedBuffer
	sup.Stderr = io.MultiWriter(os.Stderr, &log)
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	waitFor(t, "the program to run", func() bool { return lineCount(out) > 5 })
	intruder := exec.Command("/bin/sleep", "100")
	if err := intruder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { intruder.Process.Kill(); intruder.Wait() }()
	cg, _ := container.CgroupFor(name)
	if err := cg.Add(intruder.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sup.Process.Signal(syscall.SIGUSR1)
	want := fmt.Sprintf("process %d is in the container's cgroup", intruder.Process.Pid)
	waitFor(t, "the refused checkpoint", func() bool { return strings.Contains(log.String(), want) })
	if j := psJobs(t, repoDir)[name]; j.Checkpoints != 0 || j.State != "running" {
		t.Fatalf("job after the refused checkpoint: %+v", j)
	}
	n := lineCount(out)
	waitFor(t, "the container to run on after the refusal", func() bool { return lineCount(out) > n+5 })
	b, _ := os.ReadFile(filepath.Join(cg.Dir, "cgroup.events"))
	if !strings.Contains(string(b), "frozen 0") {
		t.Fatalf("cgroup left frozen:\n%s", b)
	}
}

// TestContainerTrackedPreCopy: a container whose PID 1 rewrites its whole
// memory once a second, checksummed per page. Its second checkpoint
// finds more than 64 MiB overwritten since the first and copies it while
// the container runs, in the container's own PIDs; after a crash the
// container is restored from that checkpoint and every page matches its
// checksum.
func TestContainerTrackedPreCopy(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("tracked-%d", os.Getpid())
	requireCgroup2(t, name)
	dirtier := proctest.Build(t, "dirtier", false)
	repoDir := filepath.Join(t.TempDir(), "repo")
	sup := exec.Command(ckptBin, "--repo", repoDir, "run", "--isolate", "--name", name, "--backoff", "10ms", "--", dirtier, "128", "1000")
	var log lockedBuffer
	sup.Stderr = io.MultiWriter(os.Stderr, &log)
	stdout, err := sup.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	lines := proctest.NewLines(stdout.(*os.File))
	lines.Expect(t, "READY")
	var j psJob
	waitFor(t, "the job record", func() bool { j = psJobs(t, repoDir)[name]; return j.PID > 0 })
	sup.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "a first checkpoint", func() bool { return psJobs(t, repoDir)[name].Checkpoints == 1 })
	// ~150 ms of its CPU rewrite well over half of the 128 MiB.
	before := proctest.CPUTime(t, j.PID)
	for proctest.CPUTime(t, j.PID)-before < 150*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
	}
	sup.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "a second checkpoint", func() bool { return psJobs(t, repoDir)[name].Checkpoints == 2 })
	if !strings.Contains(log.String(), "written since the previous checkpoint") || !strings.Contains(log.String(), "after copying") {
		t.Fatalf("the second checkpoint did not copy what was written while the container ran:\n%s", log.String())
	}
	if err := syscall.Kill(j.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restore after the crash", func() bool {
		j = psJobs(t, repoDir)[name]
		return j.Restarts == 1 && j.State == "running" && alive(j.PID)
	})
	syscall.Kill(j.PID, syscall.SIGUSR2)
	lines.Expect(t, "PASS")
	if err := sup.Wait(); err != nil {
		t.Fatalf("ckpt run at the end: %v\n%s", err, log.String())
	}
}
