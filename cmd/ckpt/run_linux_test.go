package main

import (
	"bufio"
	"encoding/json"
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
)

type psJob struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	PID         int    `json:"pid"`
	Restarts    int    `json:"restarts"`
	Checkpoints int    `json:"checkpoints"`
}

// stopRun sends SIGTERM to the ckpt run of sup and fails unless it exits
// with 143 (checkpointed and stopped); what names it in the failure.
func stopRun(t *testing.T, sup *exec.Cmd, what string) {
	t.Helper()
	sup.Process.Signal(syscall.SIGTERM)
	var ee *exec.ExitError
	if err := sup.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 143 {
		t.Fatalf("%s after SIGTERM: %v, want exit 143", what, err)
	}
}

// startJob inits a repository at repoDir and starts 'ckpt run' in it with
// args; setup, when not nil, adjusts the command before it starts. Its
// stderr is in the returned buffer; it is killed when the test ends.
func startJob(t *testing.T, repoDir string, setup func(*exec.Cmd), args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	wantCode(t, runCkpt(t, repoDir, "init"), exitOK, "init")
	sup := exec.Command(ckptBin, append([]string{"--repo", repoDir, "run"}, args...)...)
	logs := &lockedBuffer{}
	sup.Stderr = logs
	if setup != nil {
		setup(sup)
	}
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sup.Process.Kill() })
	return sup, logs
}

// waitRunExit waits up to limit for the ckpt run of sup to exit and fails
// unless its exit status is want; what names the moment in the failure.
func waitRunExit(t *testing.T, sup *exec.Cmd, logs *lockedBuffer, want int, limit time.Duration, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- sup.Wait() }()
	select {
	case err := <-done:
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("ckpt run %s: %v", what, err)
		}
		if code != want {
			t.Fatalf("ckpt run %s: exit %d, want %d; it said:\n%s", what, code, want, logs.String())
		}
	case <-time.After(limit):
		t.Fatalf("ckpt run still runs %v %s; it said:\n%s", limit, what, logs.String())
	}
}

func psJobs(t *testing.T, dir string) map[string]psJob {
	t.Helper()
	r := runCkpt(t, dir, "ps", "--json")
	if r.code != 0 {
		return nil
	}
	var jobs []psJob
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil {
		t.Fatalf("ps --json: %v: %q", err, r.stdout)
	}
	out := map[string]psJob{}
	for _, j := range jobs {
		out[j.Name] = j
	}
	return out
}

// TestRunLifecycle drives `ckpt run` through a periodic checkpoint, a crash
// (restored automatically), a SIGTERM stop (exit 143) and a resume to the
// end; the program's output equals an uninterrupted run's.
func TestRunLifecycle(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/python3")
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	script, out := filepath.Join(dir, "p.py"), filepath.Join(dir, "out")
	os.WriteFile(script, []byte(`import sys, time
out = open(sys.argv[1], "w")
x = 3
for i in range(400):
    x = (x * 48271) % 2147483647
    out.write(f"{i} {x}\n"); out.flush()
    time.sleep(0.01)
`), 0o600)
	var want strings.Builder
	x := 3
	for i := 0; i < 400; i++ {
		x = x * 48271 % 2147483647
		fmt.Fprintf(&want, "%d %d\n", i, x)
	}
	run := func() *exec.Cmd {
		cmd := exec.Command(ckptBin, "--repo", repoDir, "run", "--name", "job", "--every", "300ms", "--backoff", "10ms", "--", "/usr/bin/python3", script, out)
		cmd.Stderr = os.Stderr
		return cmd
	}
	sup := run()
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	defer sup.Process.Kill()
	var j psJob
	waitFor(t, "a first checkpoint", func() bool { j = psJobs(t, repoDir)["job"]; return j.Checkpoints >= 1 })
	// Crash: ckpt run restores the newest checkpoint.
	if err := syscall.Kill(j.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restore after the crash", func() bool {
		j = psJobs(t, repoDir)["job"]
		return j.Restarts == 1 && j.State == "running" && alive(j.PID)
	})
	waitFor(t, "a checkpoint after the restore", func() bool { return psJobs(t, repoDir)["job"].Checkpoints >= j.Checkpoints+1 })
	// Stop: checkpoint, kill, exit 143.
	stopRun(t, sup, "ckpt run")
	if j = psJobs(t, repoDir)["job"]; j.State != "stopped" {
		t.Fatalf("job state after SIGTERM: %+v", j)
	}
	// Resume to the end.
	sup = run()
	if err := sup.Run(); err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if j = psJobs(t, repoDir)["job"]; j.State != "done" {
		t.Fatalf("job state at the end: %+v", j)
	}
	got, _ := os.ReadFile(out)
	if string(got) != want.String() {
		t.Fatalf("output after crash, stop and resume differs from an uninterrupted run (%d vs %d bytes)", len(got), want.Len())
	}
}

func alive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return pid > 0 && err == nil
}

// TestRunInterrupt: a program under ckpt run keeps SIGINT's default (ckpt
// ignores it itself), and dying of it is an interruption, not a crash:
// ckpt exits 130, the job is stopped, not restored. Likewise a program
// whose output reader went away (SIGPIPE, exit 141): a restored one would
// write into the same closed pipe.
func TestRunInterrupt(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		cmd  []string
	}{
		{"sigint", syscall.SIGINT, []string{"/bin/sleep", "600"}},
		{"sigpipe", syscall.SIGPIPE, []string{"/usr/bin/yes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repoDir := filepath.Join(t.TempDir(), "repo")
			var out io.ReadCloser
			sup, logs := startJob(t, repoDir, func(c *exec.Cmd) {
				var err error
				if out, err = c.StdoutPipe(); err != nil {
					t.Fatal(err)
				}
			}, append([]string{"--name", "intr", "--every", "100ms", "--"}, tc.cmd...)...)
			go io.Copy(io.Discard, out) //nolint:errcheck
			waitFor(t, "a checkpoint", func() bool { return psJobs(t, repoDir)["intr"].Checkpoints >= 1 })
			pid := psJobs(t, repoDir)["intr"].PID
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				t.Fatal(err)
			}
			var ign uint64
			for _, l := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(l, "SigIgn:\t"); ok {
					ign, _ = strconv.ParseUint(v, 16, 64)
				}
			}
			if ign&(1<<(tc.sig-1)) != 0 {
				t.Fatalf("the program ignores %v (SigIgn %#x)", tc.sig, ign)
			}
			if tc.sig == syscall.SIGINT {
				syscall.Kill(pid, syscall.SIGINT)
			} else {
				out.Close() // the reader goes away: yes dies at its next write
			}
			waitRunExit(t, sup, logs, 128+int(tc.sig), 30*time.Second, "after the program's "+tc.sig.String())
			if j := psJobs(t, repoDir)["intr"]; j.State != "stopped" || j.Restarts != 0 {
				t.Errorf("job after %v: %+v, want stopped with no restart", tc.sig, j)
			}
			if !strings.Contains(logs.String(), "program ended") {
				t.Errorf("ckpt run does not say why the program ended:\n%s", logs.String())
			}
		})
	}
}

// TestRunSetsidChild: a child that left the program's process group
// (setsid) outlives its crashed root; ckpt run kills that very process
// before restoring (it holds a PID of the checkpoint) instead of failing
// the job with "PID in use".
func TestRunSetsidChild(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	repoDir, script, out := filepath.Join(dir, "repo"), filepath.Join(dir, "s.sh"), filepath.Join(dir, "out")
	os.WriteFile(script, []byte(`exec 3>"$1"
setsid /bin/sleep 1000 &
i=0; while [ $i -lt 40 ]; do echo $i >&3; sleep 0.05; i=$((i+1)); done
kill $!
`), 0o600)
	sup, logs := startJob(t, repoDir, nil, "--name", "sid", "--every", "100ms", "--backoff", "10ms", "--", "/bin/sh", script, out)
	waitFor(t, "two checkpoints", func() bool { return psJobs(t, repoDir)["sid"].Checkpoints >= 2 })
	syscall.Kill(psJobs(t, repoDir)["sid"].PID, syscall.SIGKILL)
	waitRunExit(t, sup, logs, 0, 60*time.Second, "after the crash")
	var want strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if got, _ := os.ReadFile(out); string(got) != want.String() {
		t.Errorf("output after the crash and restore:\n%s\nwant 0..39; ckpt run said:\n%s", got, logs.String())
	}
	if j := psJobs(t, repoDir)["sid"]; j.State != "done" || j.Restarts != 1 {
		t.Errorf("job: %+v, want done after one restart", j)
	}
}

// TestRunInheritedFD: a descriptor the launcher handed to ckpt run (here a
// status pipe on fd 3) reaches the program, and after a crash the restored
// program has it again, not /dev/null: its lines after the restore reach
// the launcher.
func TestRunInheritedFD(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	repoDir, script := filepath.Join(dir, "repo"), filepath.Join(dir, "s.sh")
	os.WriteFile(script, []byte(`i=0; while [ $i -lt 40 ]; do echo "status $i" >&3; sleep 0.05; i=$((i+1)); done
echo end >&3
`), 0o600)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sup, logs := startJob(t, repoDir, func(c *exec.Cmd) { c.ExtraFiles = []*os.File{pw} },
		"--name", "fd3", "--every", "100ms", "--backoff", "10ms", "--", "/bin/sh", script)
	pw.Close()
	lines := bufio.NewScanner(pr)
	killed := false
	var last string
	for lines.Scan() {
		last = lines.Text()
		if !killed && psJobs(t, repoDir)["fd3"].Checkpoints >= 2 {
			syscall.Kill(psJobs(t, repoDir)["fd3"].PID, syscall.SIGKILL)
			killed = true
		}
	}
	if err := sup.Wait(); err != nil {
		t.Fatalf("ckpt run: %v; it said:\n%s", err, logs.String())
	}
	if !killed || last != "end" {
		t.Fatalf("killed %v; the last line on fd 3 was %q, want \"end\" from the restored program; ckpt run said:\n%s", killed, last, logs.String())
	}
	if strings.Contains(logs.String(), "replaced by /dev/null") {
		t.Errorf("ckpt run replaced a descriptor by /dev/null:\n%s", logs.String())
	}
}

// TestRunStopDuringBackoff: SIGTERM while ckpt run waits to restore a
// crashed program stops the job at once (exit 143), not after the back-off
// and a restore.
func TestRunStopDuringBackoff(t *testing.T) {
	requireRoot(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	sup, logs := startJob(t, repoDir, nil, "--name", "bo", "--every", "100ms", "--backoff", "60s", "--", "/bin/sleep", "600")
	waitFor(t, "a checkpoint", func() bool { return psJobs(t, repoDir)["bo"].Checkpoints >= 1 })
	syscall.Kill(psJobs(t, repoDir)["bo"].PID, syscall.SIGKILL)
	waitFor(t, "the back-off", func() bool { return strings.Contains(logs.String(), "restart 1 of") })
	sup.Process.Signal(syscall.SIGTERM)
	waitRunExit(t, sup, logs, 143, 20*time.Second, "after SIGTERM in a 60 s back-off")
	if j := psJobs(t, repoDir)["bo"]; j.State != "stopped" {
		t.Errorf("job after SIGTERM in its back-off: %+v, want stopped", j)
	}
}
