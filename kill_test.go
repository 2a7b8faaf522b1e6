package ckpt_test

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/repo"
)

// childEnv makes the test binary run a child program instead of the tests
// (os.Args[0] re-exec), so crash tests can SIGKILL a real process.
const childEnv = "CKPT_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "lib":
		if err := killChild(os.Getenv("CKPT_TEST_DIR")); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

// The state of the crash-test program at step s is a pure function of s,
// so any restored checkpoint can be checked on its own. Each step rewrites
// a fifth of the pages, so checkpoints are incremental.
const (
	killWords = 128 << 10 // 1 MiB of uint64
	pageWords = 512
)

func killState(s int64, data []uint64) {
	for p := 0; p < len(data)/pageWords; p++ {
		last := s - (s+int64(p))%5 // newest step <= s that rewrote page p
		if last < 0 {
			last = 0
		}
		x := uint64(last)*0x9e3779b97f4a7c15 ^ uint64(p)*0xbf58476d1ce4e5b9
		for i := p * pageWords; i < (p+1)*pageWords; i++ {
			x ^= x >> 31
			x *= 0x94d049bb133111eb
			data[i] = x
		}
	}
}

type killMeta struct {
	Step  int64
	Label string
	Hist  map[string]int64
}

func killMetaFor(s int64) killMeta {
	return killMeta{Step: s, Label: "step-" + strconv.FormatInt(s, 10), Hist: map[string]int64{"x": s * 3, "y": -s}}
}

func killProtect(j *ckpt.Job, data *[]uint64, step *int64, meta *killMeta) error {
	if err := j.Protect("data", data); err != nil {
		return err
	}
	if err := j.Protect("step", step); err != nil {
		return err
	}
	return j.Protect("meta", meta)
}

// killChild restores (or starts), then checkpoints step after step until
// it is killed. It prints "ready" once restored and "committed S" after the
// checkpoint of step S is committed.
func killChild(dir string) error {
	out := bufio.NewWriter(os.Stdout)
	pending := make(chan int64, 16) // steps whose commit is in flight, in order
	j, err := ckpt.Open("kill", ckpt.WithDir(dir), ckpt.WithLogger(discardLogger()), ckpt.WithCommitHook(func(c ckpt.CommitInfo) {
		fmt.Fprintf(out, "committed %d\n", <-pending)
		out.Flush()
	}))
	if err != nil {
		return err
	}
	var data []uint64
	var step int64
	var meta killMeta
	if err := killProtect(j, &data, &step, &meta); err != nil {
		return err
	}
	if _, err := j.Restore(ctx); err != nil && !errors.Is(err, ckpt.ErrNoCheckpoint) {
		return err
	}
	if data == nil {
		data = make([]uint64, killWords)
		killState(0, data)
	}
	fmt.Fprintln(out, "ready")
	out.Flush()
	for {
		step++
		killState(step, data)
		meta = killMetaFor(step)
		pending <- step
		if err := j.Checkpoint(ctx); err != nil {
			return err
		}
	}
}

func TestKillDuringCheckpoint(t *testing.T) {
	trials := 200
	if testing.Short() {
		trials = 20
	}
	dir := filepath.Join(t.TempDir(), "repo")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	var prev int64
	want := make([]uint64, killWords)
	for trial := range trials {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=lib", "CKPT_TEST_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Kill at a random moment: a third of the trials while the child
		// may still be starting or restoring, the rest while it
		// checkpoints.
		delay := time.Duration(rng.Int64N(int64(40 * time.Millisecond)))
		var kill <-chan time.Time
		if trial%3 == 0 {
			kill = time.After(delay)
		}
		acked := int64(-1)
	loop:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break loop
				}
				if l == "ready" {
					if kill == nil {
						kill = time.After(delay)
					}
				} else if s, ok := strings.CutPrefix(l, "committed "); ok {
					acked, _ = strconv.ParseInt(s, 10, 64)
				}
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				kill = nil
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("trial %d: child was not killed: %v\n%s", trial, err, stderr.String())
		}

		// The newest checkpoint restores and holds exactly the state of
		// its step, which is at least the last step reported committed.
		j, err := ckpt.Open("kill", ckpt.WithDir(dir), ckpt.WithLogger(discardLogger()))
		if err != nil {
			t.Fatal(err)
		}
		var data []uint64
		var step int64
		var meta killMeta
		if err := killProtect(j, &data, &step, &meta); err != nil {
			t.Fatal(err)
		}
		info, err := j.Restore(ctx)
		j.Close()
		if errors.Is(err, ckpt.ErrNoCheckpoint) && acked < 0 && prev == 0 {
			continue // killed before the first commit
		}
		if err != nil {
			t.Fatalf("trial %d: restore: %v", trial, err)
		}
		if len(info.Skipped) > 0 || len(info.Unreadable) > 0 {
			t.Fatalf("trial %d: a crash damaged checkpoints: %+v", trial, info)
		}
		if step < acked || step < prev {
			t.Fatalf("trial %d: restored step %d, but step %d was committed (previous trial restored %d)", trial, step, max(acked, prev), prev)
		}
		killState(step, want)
		if len(data) != len(want) || !equalWords(data, want) {
			t.Fatalf("trial %d: data of step %d differs from its expected state", trial, step)
		}
		if m := killMetaFor(step); meta.Step != m.Step || meta.Label != m.Label || meta.Hist["x"] != m.Hist["x"] || meta.Hist["y"] != m.Hist["y"] {
			t.Fatalf("trial %d: meta %+v, want %+v", trial, meta, m)
		}
		prev = step
		if trial%50 == 49 {
			// Reclaim what retention left behind; later trials must still
			// restore.
			r, err := repo.OpenDir(ctx, dir, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.GC(ctx); err != nil {
				t.Fatalf("gc: %v", err)
			}
			r.Close()
		}
	}
	if prev == 0 {
		t.Fatal("no trial got past the first checkpoint")
	}
	t.Logf("%d trials, last restored step %d", trials, prev)
}

func equalWords(a, b []uint64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
