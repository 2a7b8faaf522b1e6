package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/repo"
)

// logLines collects a process's stderr lines and lets a test wait for
// one (an event, not a sleep).
type logLines struct {
	mu     sync.Mutex
	lines  []string
	notify chan struct{}
	closed bool
}

func watchLines(r io.Reader, echo string) *logLines {
	l := &logLines{notify: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.mu.Unlock()
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "%s: %s\n", echo, sc.Text())
			}
			select {
			case l.notify <- struct{}{}:
			default:
			}
		}
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}()
	return l
}

// count is the number of lines containing every one of subs.
func (l *logLines) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, s := range l.lines {
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				continue next
			}
		}
		n++
	}
	return n
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// wait waits until n lines contain every one of subs.
func (l *logLines) wait(t *testing.T, n int, subs ...string) {
	t.Helper()
	timeout := time.After(90 * time.Second)
	for l.count(subs...) < n {
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if closed {
			t.Fatalf("the log ended without %d lines with %q:\n%s", n, subs, l)
		}
		select {
		case <-l.notify:
		case <-timeout:
			t.Fatalf("timed out waiting for %d lines with %q:\n%s", n, subs, l)
		}
	}
}

// groupRun is a coordinator and the members of group g, each running
// p.py: a pseudo-random sequence written to its own file.
type groupRun struct {
	t        *testing.T
	dir      string
	repoDir  string
	addr     string
	n, steps int
	coord    *exec.Cmd   // the current coordinator
	coords   []*exec.Cmd // every coordinator started
	clog     *logLines
	all      []*member
}

type member struct {
	cmd *exec.Cmd
	log *logLines
}

func startGroupRun(t *testing.T, n, steps int) *groupRun {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	dir := t.TempDir()
	g := &groupRun{t: t, dir: dir, repoDir: filepath.Join(dir, "repo"), n: n, steps: steps}
	if err := os.WriteFile(filepath.Join(dir, "p.py"), []byte(`import sys, time
out = open(sys.argv[1], "w")
x = 3 + int(sys.argv[2])
for i in range(int(sys.argv[3])):
    x = (x * 48271) % 2147483647
    out.write(f"{i} {x}\n"); out.flush()
    time.sleep(0.01)
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No coordinator, member or program left behind, whatever happened.
		for _, c := range g.coords {
			c.Process.Kill()
			c.Wait()
		}
		for _, m := range g.all {
			m.cmd.Process.Kill()
		}
		for _, j := range psJobs(t, g.repoDir) {
			if j.PID > 0 {
				syscall.Kill(j.PID, syscall.SIGKILL)
			}
		}
		for _, m := range g.all {
			m.cmd.Wait()
		}
	})
	g.startCoordinator()
	return g
}

// startCoordinator starts `ckpt coordinator` for the group (again, after
// a crash: on the same repository, at a new address).
func (g *groupRun) startCoordinator() {
	t := g.t
	g.coord = exec.Command(ckptBin, "--repo", g.repoDir, "coordinator", "--group", "g", "--ranks", fmt.Sprint(g.n), "--timeout", "60s", "--verbose")
	g.coord.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	cerrPipe, err := g.coord.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cout, err := g.coord.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.coord.Start(); err != nil {
		t.Fatal(err)
	}
	g.coords = append(g.coords, g.coord)
	g.clog = watchLines(cerrPipe, "coordinator")
	sc := bufio.NewScanner(cout)
	if !sc.Scan() {
		t.Fatalf("coordinator printed nothing")
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening ")
	if !ok {
		t.Fatalf("coordinator said %q", sc.Text())
	}
	g.addr = addr
}

func (g *groupRun) out(r int) string { return filepath.Join(g.dir, fmt.Sprintf("out%d", r)) }

// want is member r's output in an uninterrupted run.
func (g *groupRun) want(r int) string {
	var b strings.Builder
	x := 3 + r
	for i := range g.steps {
		x = x * 48271 % 2147483647
		fmt.Fprintf(&b, "%d %d\n", i, x)
	}
	return b.String()
}

func (g *groupRun) launch(r int) *member {
	c := exec.Command(ckptBin, "--repo", g.repoDir, "run", "--group", "g", "--coordinator", g.addr, "--rank", fmt.Sprint(r), "--ranks", fmt.Sprint(g.n),
		"--", "/usr/bin/python3", filepath.Join(g.dir, "p.py"), g.out(r), fmt.Sprint(r), fmt.Sprint(g.steps))
	c.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	p, err := c.StderrPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		g.t.Fatal(err)
	}
	m := &member{cmd: c, log: watchLines(p, fmt.Sprintf("member %d", r))}
	g.all = append(g.all, m)
	return m
}

// launchAll starts every member and waits until each program runs.
func (g *groupRun) launchAll(fresh bool) []*member {
	t := g.t
	var ms []*member
	for r := range g.n {
		ms = append(ms, g.launch(r))
	}
	if fresh {
		for r := range g.n {
			ms[r].log.wait(t, 1, "starts fresh")
			waitFor(t, fmt.Sprintf("member %d's program to write", r), func() bool { return fileSize(g.out(r)) > 0 })
		}
	}
	return ms
}

// finish waits for every member of a launch that resumes round to end,
// and checks each was restored from its member of round and produced an
// uninterrupted run's output.
func (g *groupRun) finish(ms []*member, round uint64, members []string) {
	t := g.t
	for r := range g.n {
		if err := ms[r].cmd.Wait(); err != nil {
			t.Fatalf("member %d after the relaunch: %v\n%s", r, err, ms[r].log)
		}
		line := fmt.Sprintf("restoring rank %d from global checkpoint round %d (%s)", r, round, members[r][:12])
		if ms[r].log.count(line) != 1 {
			t.Errorf("member %d: no %q in\n%s", r, line, ms[r].log)
		}
		got, err := os.ReadFile(g.out(r))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != g.want(r) {
			t.Errorf("member %d: output differs from an uninterrupted run (%d vs %d bytes)", r, len(got), len(g.want(r)))
		}
	}
	g.clog.wait(t, 1, "every rank is done")
	for r, j := range psJobs(t, g.repoDir) {
		if j.State != "done" {
			t.Errorf("job %s: state %s, want done", r, j.State)
		}
	}
}

// global is the group's recovery line, its members' IDs by rank.
func (g *groupRun) global() (uint64, []string) {
	rp, err := repo.OpenDir(context.Background(), g.repoDir, nil, false)
	if err != nil {
		g.t.Fatal(err)
	}
	defer rp.Close()
	gl, err := group.LastGlobal(context.Background(), rp, "g")
	if err != nil {
		g.t.Fatal(err)
	}
	var ids []string
	for r, v := range gl.Votes {
		if _, err := rp.Load(context.Background(), v.Checkpoint); err != nil {
			g.t.Fatalf("rank %d's member of global checkpoint round %d: %v", r, gl.Round, err)
		}
		ids = append(ids, v.Checkpoint)
	}
	return gl.Round, ids
}

// TestRunGroup runs three unmodified python3 programs as the members of a
// group (`ckpt run --group`) under `ckpt coordinator`, over loopback: a
// global checkpoint commits; in the next round member 2 is killed after
// the others prepared, which aborts the round, and the others kill their
// programs and exit 125 (group lost); the global checkpoint of round 1 is
// still the recovery line, and launched again every member is restored
// from its member of round 1; every program's output equals an
// uninterrupted run's.
func TestRunGroup(t *testing.T) {
	const n = 3
	g := startGroupRun(t, n, 900)
	clog := g.clog
	ms := g.launchAll(true)
	clog.wait(t, n, "rank registered")

	// Round 1 commits.
	g.coord.Process.Signal(syscall.SIGUSR1)
	clog.wait(t, 1, "global checkpoint committed", "round=1")
	for r := range n {
		ms[r].log.wait(t, 1, "global checkpoint round 1 committed")
	}
	round, g1 := g.global()
	if round != 1 || len(g1) != n {
		t.Fatalf("global checkpoint after round 1: round %d, members %v", round, g1)
	}

	// Round 2: member 2 cannot answer (stopped), the others prepare, then
	// member 2 and its program are killed: the round aborts.
	if err := ms[2].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	g.coord.Process.Signal(syscall.SIGUSR1)
	clog.wait(t, 2, "rank prepared", "round=2")
	if c := clog.count("rank prepared", "round=2", "rank=2"); c != 0 {
		t.Fatalf("stopped member 2 prepared round 2")
	}
	prog2 := psJobs(t, g.repoDir)["g.rank2"].PID
	if prog2 <= 0 {
		t.Fatalf("no program PID for member 2: %+v", psJobs(t, g.repoDir))
	}
	ms[2].cmd.Process.Kill()
	syscall.Kill(prog2, syscall.SIGKILL)
	ms[2].cmd.Wait()
	clog.wait(t, 1, "global checkpoint aborted", "round=2")
	for r := range 2 {
		err := ms[r].cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 125 {
			t.Fatalf("member %d after member 2 was killed: %v, want exit 125\n%s", r, err, ms[r].log)
		}
		if ms[r].log.count("group g lost") == 0 {
			t.Errorf("member %d does not say the group is lost:\n%s", r, ms[r].log)
		}
	}
	waitFor(t, "member 2's program to go", func() bool { return !alive(prog2) })
	round, g2 := g.global()
	if round != 1 || strings.Join(g2, ",") != strings.Join(g1, ",") {
		t.Fatalf("recovery line after the aborted round: round %d %v; want round 1 %v", round, g2, g1)
	}

	// Launched again: every member comes back from round 1 and runs to
	// the end.
	g.finish(g.launchAll(false), 1, g1)
}

// TestRunGroupStop: SIGTERM to every member (a scheduler's preemption)
// takes a global checkpoint before the programs are stopped (exit 143);
// launched again, the group resumes from it.
func TestRunGroupStop(t *testing.T) {
	const n = 3
	g := startGroupRun(t, n, 700)
	ms := g.launchAll(true)
	g.clog.wait(t, n, "rank registered")
	for r := range n {
		ms[r].cmd.Process.Signal(syscall.SIGTERM)
	}
	for r := range n {
		err := ms[r].cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Fatalf("member %d after SIGTERM: %v, want exit 143\n%s", r, err, ms[r].log)
		}
		if ms[r].log.count("stopping on terminated (round 1 committed)") != 1 {
			t.Errorf("member %d did not stop after round 1 committed:\n%s", r, ms[r].log)
		}
	}
	round, g1 := g.global()
	if round != 1 {
		t.Fatalf("recovery line after the stop: round %d, want 1", round)
	}
	if j := psJobs(t, g.repoDir)["g.rank0"]; j.State != "stopped" {
		t.Errorf("member 0's job after the stop: %+v", j)
	}
	g.finish(g.launchAll(false), 1, g1)
}

// TestRunGroupCoordinatorKilled: the coordinator is SIGKILLed in the
// middle of round 2 (two members prepared, the third stopped before it
// could): every member kills its program and exits 125; a new coordinator
// on the same repository takes round 1 as the recovery line (round 2 was
// never committed), and the members launched again resume from it.
func TestRunGroupCoordinatorKilled(t *testing.T) {
	const n = 3
	g := startGroupRun(t, n, 800)
	ms := g.launchAll(true)
	g.clog.wait(t, n, "rank registered")
	g.coord.Process.Signal(syscall.SIGUSR1)
	g.clog.wait(t, 1, "global checkpoint committed", "round=1")
	for r := range n {
		ms[r].log.wait(t, 1, "global checkpoint round 1 committed")
	}
	_, g1 := g.global()
	if err := ms[2].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	g.coord.Process.Signal(syscall.SIGUSR1)
	g.clog.wait(t, 2, "rank prepared", "round=2")
	g.coord.Process.Kill()
	g.coord.Wait()
	ms[2].cmd.Process.Signal(syscall.SIGCONT)
	for r := range n {
		err := ms[r].cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 125 {
			t.Fatalf("member %d after the coordinator was killed: %v, want exit 125\n%s", r, err, ms[r].log)
		}
	}
	round, g2 := g.global()
	if round != 1 || strings.Join(g2, ",") != strings.Join(g1, ",") {
		t.Fatalf("recovery line after the coordinator died in round 2: round %d %v; want round 1 %v", round, g2, g1)
	}
	g.startCoordinator()
	g.clog.wait(t, 1, "recovery line", "round=1")
	g.finish(g.launchAll(false), 1, g1)
}

func TestRunGroupUsage(t *testing.T) {
	dir := t.TempDir()
	res := runCkptEnv(t, dir, []string{"CKPT_RANK=", "SLURM_PROCID=", "JOB_COMPLETION_INDEX=", "CKPT_RANKS=", "SLURM_NTASKS="},
		"run", "--group", "g", "--", "true")
	wantCode(t, res, exitUsage, "run --group without --coordinator")
	res = runCkptEnv(t, dir, []string{"CKPT_RANK=", "SLURM_PROCID=", "JOB_COMPLETION_INDEX=", "CKPT_RANKS=", "SLURM_NTASKS="},
		"run", "--group", "g", "--coordinator", "127.0.0.1:1", "--", "true")
	wantCode(t, res, exitUsage, "run --group without a rank")
	if !strings.Contains(res.stderr, "--rank") {
		t.Errorf("the message does not say how to give the rank: %s", res.stderr)
	}
	res = runCkptEnv(t, dir, []string{"SLURM_PROCID=3", "SLURM_NTASKS=3"}, "run", "--group", "g", "--coordinator", "127.0.0.1:1", "--", "true")
	wantCode(t, res, exitUsage, "run --group with rank 3 of 3")
	res = runCkptEnv(t, dir, []string{"CKPT_RANK=x", "CKPT_RANKS=3"}, "run", "--group", "g", "--coordinator", "127.0.0.1:1", "--", "true")
	wantCode(t, res, exitUsage, "run --group with CKPT_RANK=x")
	member := []string{"run", "--group", "g", "--coordinator", "127.0.0.1:1", "--rank", "0", "--ranks", "1"}
	res = runCkpt(t, dir, append(member, "--isolate", "--", "true")...)
	wantCode(t, res, exitUsage, "run --group --isolate")
	res = runCkpt(t, dir, append(member, "--hostname", "h", "--", "true")...)
	wantCode(t, res, exitUsage, "run --group --hostname without --isolate")
}
