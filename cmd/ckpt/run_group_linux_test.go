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

// TestRunGroup runs three unmodified python3 programs as the members of a
// group (`ckpt run --group`) under `ckpt coordinator`, over loopback: a
// global checkpoint commits; in the next round member 2 is killed after
// the others prepared, which aborts the round, and the others kill their
// programs and exit 125 (group lost); the global checkpoint of round 1 is
// still the recovery line, and launched again every member is restored
// from its member of round 1; every program's output equals an
// uninterrupted run's.
func TestRunGroup(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	const n, steps = 3, 900
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	script := filepath.Join(dir, "p.py")
	if err := os.WriteFile(script, []byte(`import sys, time
out = open(sys.argv[1], "w")
x = 3 + int(sys.argv[2])
for i in range(int(sys.argv[3])):
    x = (x * 48271) % 2147483647
    out.write(f"{i} {x}\n"); out.flush()
    time.sleep(0.01)
`), 0o600); err != nil {
		t.Fatal(err)
	}
	outFile := func(r int) string { return filepath.Join(dir, fmt.Sprintf("out%d", r)) }
	want := func(r int) string {
		var b strings.Builder
		x := 3 + r
		for i := range steps {
			x = x * 48271 % 2147483647
			fmt.Fprintf(&b, "%d %d\n", i, x)
		}
		return b.String()
	}

	coord := exec.Command(ckptBin, "--repo", repoDir, "coordinator", "--group", "g", "--ranks", fmt.Sprint(n), "--timeout", "60s", "--verbose")
	coord.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	cerrPipe, err := coord.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cout, err := coord.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		coord.Process.Kill()
		coord.Wait()
	}()
	clog := watchLines(cerrPipe, "coordinator")
	sc := bufio.NewScanner(cout)
	if !sc.Scan() {
		t.Fatalf("coordinator printed nothing")
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening ")
	if !ok {
		t.Fatalf("coordinator said %q", sc.Text())
	}

	type member struct {
		cmd *exec.Cmd
		log *logLines
	}
	var all []*member
	defer func() {
		// On failure: no member or program left behind.
		for _, m := range all {
			m.cmd.Process.Kill()
		}
		for _, j := range psJobs(t, repoDir) {
			if j.PID > 0 {
				syscall.Kill(j.PID, syscall.SIGKILL)
			}
		}
		for _, m := range all {
			m.cmd.Wait()
		}
	}()
	launch := func(r int) *member {
		c := exec.Command(ckptBin, "--repo", repoDir, "run", "--group", "g", "--coordinator", addr, "--rank", fmt.Sprint(r), "--ranks", fmt.Sprint(n),
			"--", "/usr/bin/python3", script, outFile(r), fmt.Sprint(r), fmt.Sprint(steps))
		c.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
		p, err := c.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		m := &member{cmd: c, log: watchLines(p, fmt.Sprintf("member %d", r))}
		all = append(all, m)
		return m
	}
	var ms []*member
	for r := range n {
		ms = append(ms, launch(r))
	}
	clog.wait(t, n, "rank registered")
	for r := range n {
		ms[r].log.wait(t, 1, "starts fresh")
		waitFor(t, fmt.Sprintf("member %d's program to write", r), func() bool { return fileSize(outFile(r)) > 0 })
	}

	// Round 1 commits.
	coord.Process.Signal(syscall.SIGUSR1)
	clog.wait(t, 1, "global checkpoint committed", "round=1")
	for r := range n {
		ms[r].log.wait(t, 1, "global checkpoint round 1 committed")
	}
	rp, err := repo.OpenDir(context.Background(), repoDir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	g1, err := group.LastGlobal(context.Background(), rp, "g")
	if err != nil || g1.Round != 1 || len(g1.Votes) != n {
		t.Fatalf("global checkpoint after round 1: %+v, %v", g1, err)
	}

	// Round 2: member 2 cannot answer (stopped), the others prepare, then
	// member 2 and its program are killed: the round aborts.
	if err := ms[2].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	coord.Process.Signal(syscall.SIGUSR1)
	clog.wait(t, 2, "rank prepared", "round=2")
	if c := clog.count("rank prepared", "round=2", "rank=2"); c != 0 {
		t.Fatalf("stopped member 2 prepared round 2")
	}
	prog2 := psJobs(t, repoDir)["g.rank2"].PID
	if prog2 <= 0 {
		t.Fatalf("no program PID for member 2: %+v", psJobs(t, repoDir))
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
	g2, err := group.LastGlobal(context.Background(), rp, "g")
	if err != nil || g2.Round != 1 {
		t.Fatalf("recovery line after the aborted round: round %d, %v; want 1", g2.Round, err)
	}
	for r, v := range g2.Votes {
		if v.Checkpoint != g1.Votes[r].Checkpoint {
			t.Fatalf("rank %d's member of round 1 changed: %s, was %s", r, v.Checkpoint, g1.Votes[r].Checkpoint)
		}
		if _, err := rp.Load(context.Background(), v.Checkpoint); err != nil {
			t.Fatalf("rank %d's member of the recovery line is gone: %v", r, err)
		}
	}

	// Launched again: every member comes back from round 1 and runs to
	// the end.
	ms = ms[:0]
	for r := range n {
		ms = append(ms, launch(r))
	}
	for r := range n {
		if err := ms[r].cmd.Wait(); err != nil {
			t.Fatalf("member %d after the relaunch: %v\n%s", r, err, ms[r].log)
		}
		line := fmt.Sprintf("restoring rank %d from global checkpoint round 1 (%s)", r, g1.Votes[r].Checkpoint[:12])
		if ms[r].log.count(line) != 1 {
			t.Errorf("member %d: no %q in\n%s", r, line, ms[r].log)
		}
		got, err := os.ReadFile(outFile(r))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want(r) {
			t.Errorf("member %d: output differs from an uninterrupted run (%d vs %d bytes)", r, len(got), len(want(r)))
		}
	}
	clog.wait(t, 1, "every rank is done")
	for r, j := range psJobs(t, repoDir) {
		if j.State != "done" {
			t.Errorf("job %s: state %s, want done", r, j.State)
		}
	}
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
}
