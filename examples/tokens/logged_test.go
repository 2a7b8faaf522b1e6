package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/repo"
)

// TestLoggedRankRestartsAlone runs four ranks with uncoordinated
// checkpoints and sender-based message logging, and SIGKILLs one rank
// three times at random points; each time only that rank is started
// again. It restores its own last checkpoint and the others replay what
// they sent it since; they are never restarted. Every rank must end with
// the balance of an uninterrupted run.
func TestLoggedRankRestartsAlone(t *testing.T) {
	seed := rand.Uint64()
	if s, err := strconv.ParseUint(os.Getenv("CKPT_TEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, 13))
	t.Logf("seed %d", seed)
	const size, steps, initial = 4, 2500, 1000
	dir := t.TempDir()
	log := seedLog(t, seed)
	common := fmt.Sprintf("-logged -size %d -repo %s -steps %d -initial %d -seed %d -ckpt-every 150", size, dir, steps, initial, seed)
	c, addr, _ := coordinator(t, common+" -serve 127.0.0.1:0", log)
	defer c.cmd.Process.Kill()
	args := func(r int) string { return fmt.Sprintf("%s -coordinator %s -rank %d -pace 200us", common, addr, r) }
	ranks := make([]*proc, size)
	for r := range size {
		ranks[r] = startProc(t, fmt.Sprintf("rank %d", r), args(r), nil, &prefixWriter{log, fmt.Sprintf("rank %d: ", r)})
	}
	victim := rng.IntN(size)
	// The first kill comes after the victim's first checkpoint, so that
	// at least one restart is from a checkpoint of its own whatever the
	// machine's load (the run has no event for it: the repository is
	// looked at).
	deadline := time.Now().Add(30 * time.Second)
	for !hasCheckpoint(t, dir, fmt.Sprintf("tokens.rank%d", victim)) {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: rank %d took no checkpoint in 30 s", seed, victim)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for k := range 3 {
		// A random point of the run (not a synchronisation).
		time.Sleep(time.Duration(150+rng.IntN(350)) * time.Millisecond)
		fmt.Fprintf(log, "--- SIGKILL rank %d (%d)\n", victim, k)
		ranks[victim].cmd.Process.Signal(syscall.SIGKILL)
		<-ranks[victim].done
		ranks[victim] = startProc(t, fmt.Sprintf("rank %d", victim), args(victim), nil, &prefixWriter{log, fmt.Sprintf("rank %d (restarted): ", victim)})
	}
	timeout := time.After(45 * time.Second)
	want := Expected(seed, size, steps, initial)
	for r, p := range ranks {
		select {
		case err := <-p.done:
			if err != nil {
				t.Fatalf("rank %d: %v", r, err)
			}
		case <-timeout:
			for _, p := range ranks {
				p.cmd.Process.Kill()
			}
			t.Fatalf("seed %d: rank %d did not finish", seed, r)
		}
		line := strings.TrimSpace(p.out.String())
		var rk int
		var bal, sent, recv int64
		var restarted bool
		if _, err := fmt.Sscanf(line, "rank %d balance %d sent %d received %d restarted %t", &rk, &bal, &sent, &recv, &restarted); err != nil {
			t.Fatalf("rank %d printed %q", r, line)
		}
		if bal != want[r] {
			t.Errorf("seed %d: rank %d ends with %d, an uninterrupted run with %d", seed, r, bal, want[r])
		}
		if restarted && r != victim {
			t.Errorf("rank %d restarted though it never failed", r)
		}
	}
	<-c.done
	if !strings.Contains(log.String(), "logged rank restarts alone from its checkpoint") {
		t.Errorf("seed %d: the victim never restarted from a checkpoint of its own", seed)
	}
}

// hasCheckpoint says whether the repository in dir has a checkpoint of
// job name.
func hasCheckpoint(t *testing.T, dir, name string) bool {
	r, err := repo.OpenDir(context.Background(), dir, nil, false)
	if err != nil {
		return false // not created yet
	}
	defer r.Close()
	m, err := r.Latest(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return m != nil
}
