package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/policy"
)

// policyJob is the part of a `ps --json` record the policy tests read.
type policyJob struct {
	Name        string  `json:"name"`
	State       string  `json:"state"`
	PID         int     `json:"pid"`
	Restarts    int     `json:"restarts"`
	Checkpoints int     `json:"checkpoints"`
	Message     string  `json:"message"`
	Runtime     float64 `json:"runtime_s"`
	Cost        float64 `json:"checkpoint_cost_s"`
	LastCost    float64 `json:"last_checkpoint_cost_s"`
	Interval    float64 `json:"interval_s"`
	MTBF        float64 `json:"mtbf_s"`
	Deadline    string  `json:"deadline"`
}

func policyJobOf(t *testing.T, repoDir, name string) policyJob {
	t.Helper()
	r := runCkpt(t, repoDir, "ps", "--json")
	if r.code != 0 {
		return policyJob{}
	}
	var jobs []policyJob
	if err := json.Unmarshal([]byte(r.stdout), &jobs); err != nil {
		t.Fatalf("ps --json: %v: %q", err, r.stdout)
	}
	for _, j := range jobs {
		if j.Name == name {
			return j
		}
	}
	return policyJob{}
}

// startRun starts `ckpt run --name job FLAGS -- sleep 600` on a fresh
// repository and returns it with the repository directory.
func startRun(t *testing.T, env []string, flags ...string) (*exec.Cmd, string) {
	t.Helper()
	requireRoot(t)
	repoDir := filepath.Join(t.TempDir(), "repo")
	args := append([]string{"--repo", repoDir, "run", "--name", "job"}, flags...)
	cmd := exec.Command(ckptBin, append(args, "--", "/bin/sleep", "600")...)
	cmd.Env = append(append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=", policy.EnvDeadline+"="), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if j := policyJobOf(t, repoDir, "job"); j.PID > 0 {
			syscall.Kill(j.PID, syscall.SIGKILL)
		}
	})
	return cmd, repoDir
}

func wantExit(t *testing.T, cmd *exec.Cmd, code int) {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	if got := 0; errors.As(err, &ee) {
		got = ee.ExitCode()
		if got != code {
			t.Fatalf("ckpt run exited %d, want %d", got, code)
		}
	} else if code != 0 {
		t.Fatalf("ckpt run: %v, want exit %d", err, code)
	}
}

// TestRunAutoInterval: with --every auto --mtbf the supervisor measures
// each checkpoint and re-arms its timer with Daly's interval of the moving
// cost estimate; the record shows cost, MTBF and interval.
func TestRunAutoInterval(t *testing.T) {
	cmd, repoDir := startRun(t, nil, "--every", "auto", "--mtbf", "2s", "--cost", "10ms")
	var j policyJob
	waitFor(t, "three checkpoints at the auto interval", func() bool {
		j = policyJobOf(t, repoDir, "job")
		return j.Checkpoints >= 3
	})
	if j.Cost <= 0 || j.LastCost <= 0 || j.MTBF != 2 {
		t.Fatalf("record lacks the policy state: %+v", j)
	}
	c := time.Duration(j.Cost * float64(time.Second))
	want := max(policy.Daly(c, 2*time.Second), policy.MinInterval).Seconds()
	if math.Abs(j.Interval-want) > 1e-3 {
		t.Fatalf("interval %.4fs, want Daly(%v, 2s) = %.4fs", j.Interval, c, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	wantExit(t, cmd, 143)
}

// TestRunMTBFFromHistory: without --mtbf the estimate comes from the job's
// record, (runtime + 24 h)/(crashes + 1), and halves after a crash.
func TestRunMTBFFromHistory(t *testing.T) {
	cmd, repoDir := startRun(t, nil, "--every", "auto", "--cost", "10ms", "--backoff", "10ms")
	var j policyJob
	// The first auto interval with a 24 h prior is tens of seconds: ask
	// for the first checkpoint.
	waitFor(t, "the job to run", func() bool { return policyJobOf(t, repoDir, "job").State == "running" })
	cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "a first checkpoint", func() bool { j = policyJobOf(t, repoDir, "job"); return j.Checkpoints >= 1 })
	prior := policy.DefaultMTBF.Seconds()
	if j.MTBF < prior || j.MTBF > prior+j.Runtime+60 {
		t.Fatalf("MTBF without crashes %vs, want about %vs", j.MTBF, prior+j.Runtime)
	}
	syscall.Kill(j.PID, syscall.SIGKILL)
	waitFor(t, "the restore after the crash", func() bool {
		j = policyJobOf(t, repoDir, "job")
		return j.Restarts == 1 && j.State == "running" && alive(j.PID)
	})
	if want := (prior + j.Runtime) / 2; math.Abs(j.MTBF-want) > 60 {
		t.Fatalf("MTBF after one crash %vs, want about %vs", j.MTBF, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	wantExit(t, cmd, 143)
}

// TestRunSignalTriggers: --signal SIGUSR2:continue checkpoints and goes
// on; --signal SIGXCPU checkpoints and stops with 143.
func TestRunSignalTriggers(t *testing.T) {
	cmd, repoDir := startRun(t, nil, "--signal", "SIGXCPU", "--signal", "usr2:continue")
	waitFor(t, "the job to run", func() bool { return policyJobOf(t, repoDir, "job").State == "running" })
	cmd.Process.Signal(syscall.SIGUSR2)
	var j policyJob
	waitFor(t, "the SIGUSR2 checkpoint", func() bool { j = policyJobOf(t, repoDir, "job"); return j.Checkpoints == 1 })
	if j.State != "running" || !alive(j.PID) {
		t.Fatalf("SIGUSR2:continue stopped the program: %+v", j)
	}
	cmd.Process.Signal(syscall.SIGXCPU)
	wantExit(t, cmd, 143)
	j = policyJobOf(t, repoDir, "job")
	if j.State != "stopped" || j.Checkpoints != 2 || !strings.Contains(j.Message, "CPU time limit") {
		t.Fatalf("after SIGXCPU: %+v", j)
	}
}

// TestRunDeadline: with a deadline the run checkpoints and stops (143)
// before it, at the deadline less the cost and the margin; the deadline
// comes from --deadline or from SLURM_JOB_END_TIME.
func TestRunDeadline(t *testing.T) {
	for _, c := range []struct {
		name  string
		env   func(end time.Time) []string
		flags func(end time.Time) []string
	}{
		{"flag", func(time.Time) []string { return nil }, func(end time.Time) []string {
			return []string{"--deadline", end.UTC().Format(time.RFC3339)}
		}},
		{"slurm", func(end time.Time) []string {
			return []string{fmt.Sprintf("%s=%d", policy.EnvDeadline, end.Unix())}
		}, func(time.Time) []string { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			end := time.Now().Add(4 * time.Second).Truncate(time.Second)
			start := time.Now()
			cmd, repoDir := startRun(t, c.env(end), append(c.flags(end), "--cost", "200ms", "--margin", "1s")...)
			wantExit(t, cmd, 143)
			stopped := time.Now()
			j := policyJobOf(t, repoDir, "job")
			if j.State != "stopped" || j.Checkpoints != 1 || !strings.Contains(j.Message, "deadline") {
				t.Fatalf("after the deadline trigger: %+v", j)
			}
			if j.Deadline != end.UTC().Format(time.RFC3339) {
				t.Fatalf("record deadline %q, want %v", j.Deadline, end.UTC())
			}
			// Stopped before the deadline, and not before the trigger time
			// end − (cost 200 ms + margin 1 s) less scheduling slack.
			if !stopped.Before(end) || stopped.Before(end.Add(-1300*time.Millisecond)) {
				t.Fatalf("stopped %v after the start, deadline %v after it", stopped.Sub(start), end.Sub(start))
			}
		})
	}
}

// TestRunPreemptNotice plays a GCE metadata server: FALSE until the test
// flips it, then TRUE; ckpt run checkpoints, stops and exits 143.
func TestRunPreemptNotice(t *testing.T) {
	var preempted atomic.Bool
	polls := make(chan struct{}, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		select {
		case polls <- struct{}{}:
		default:
		}
		if preempted.Load() {
			fmt.Fprint(w, "TRUE")
		} else {
			fmt.Fprint(w, "FALSE")
		}
	}))
	defer srv.Close()
	cmd, repoDir := startRun(t, nil, "--preempt-url", srv.URL+"/computeMetadata/v1/instance/preempted", "--preempt-poll", "50ms")
	for range 2 { // two FALSE answers: no stop
		select {
		case <-polls:
		case <-time.After(60 * time.Second):
			t.Fatal("the endpoint was never polled")
		}
	}
	if j := policyJobOf(t, repoDir, "job"); j.State != "running" || j.Checkpoints != 0 {
		t.Fatalf("FALSE should not stop the job: %+v", j)
	}
	preempted.Store(true)
	wantExit(t, cmd, 143)
	j := policyJobOf(t, repoDir, "job")
	if j.State != "stopped" || j.Checkpoints != 1 || !strings.Contains(j.Message, "preemption") {
		t.Fatalf("after the notice: %+v", j)
	}
	if r := runCkpt(t, repoDir, "ls", "job"); r.code != 0 || !strings.Contains(r.stdout, "job") {
		t.Fatalf("no checkpoint of the job: %+v", r)
	}
}

func TestRunPolicyUsage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	for _, args := range [][]string{
		{"--every", "sometimes"}, {"--signal", "SIGNOPE"}, {"--signal", "KILL"},
		{"--deadline", "tomorrow"}, {"--preempt-url", "metadata"}, {"--mtbf", "-1h"},
	} {
		r := runCkpt(t, dir, append(append([]string{"run"}, args...), "--", "/bin/true")...)
		wantCode(t, r, exitUsage, strings.Join(args, " "))
	}
}
