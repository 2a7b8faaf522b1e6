package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
)

func agentClient(t *testing.T, p *agentProc) *backend.Agent {
	t.Helper()
	a, err := backend.OpenAgent(context.Background(), "agent://"+p.addr+"/sim", agentTok)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestLibraryEncryptedAgent: a program using the library checkpoints
// asynchronously into an encrypted agent:// repository. The library says
// nothing about levels: the agent backend tells the agent of the commit
// (the agent cannot read the sealed manifest), and the agent moves it to
// its partner and to erasure fragments while the program goes on. The
// program's Checkpoint returns after staging, its commit after L1. The
// node and its partner are then killed and the node's disk lost: ckpt
// fetch rebuilds the checkpoint from fragments on the replacement node and
// the library restores it.
func TestLibraryEncryptedAgent(t *testing.T) {
	procs := startAgents(t, 4, map[string]any{
		"partner": map[string]any{"every": 1},
		"erasure": map[string]any{"every": 1, "k": 2, "m": 2, "stripe_kib": 256},
	})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("library key for the agent test 0123456789"), 0o600)
	loc := "agent://" + procs[0].addr + "/sim"
	ctx := context.Background()

	j, err := ckpt.Open("job", ckpt.WithLocation(loc), ckpt.WithKeyFile(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, 32<<20)
	fillRandom(state, 3, 4)
	if err := j.Protect("state", state); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	blocked := time.Since(t0)
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}
	l1 := time.Since(t0)
	info, _ := j.LastCommit()
	a := agentClient(t, procs[0])
	if n, err := a.WaitIdle(ctx, 30*time.Second); err != nil || n != 0 {
		t.Fatalf("flush: %d %v", n, err)
	}
	flushed := time.Since(t0)
	t.Logf("32 MiB, encrypted: Checkpoint blocked %v, committed at L1 after %v, partner and erasure complete after %v",
		blocked.Round(time.Millisecond), l1.Round(time.Millisecond), flushed.Round(time.Millisecond))
	for _, l := range []string{levels.Local, levels.Partner, levels.Erasure} {
		r, err := levels.LoadRecord(ctx, a, info.ID, l)
		if err != nil || !r.Complete || r.Seq != info.Seq {
			t.Fatalf("level %s: %+v %v", l, r, err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// The node and its partner die; the node's disk is lost.
	procs[0].kill()
	procs[1].kill()
	os.RemoveAll(procs[0].dir)
	procs[0].start(t)
	cmd := exec.Command(ckptBin, "fetch", "job", "--from", loc, "--json", "--key-file", keyFile)
	cmd.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fetch: %v %s", err, out)
	}
	var res fetchJSON
	if err := json.Unmarshal(out, &res); err != nil || res.ID != info.ID || res.Level != levels.Erasure {
		t.Fatalf("fetch: %v %s", err, out)
	}
	j2, err := ckpt.Open("job", ckpt.WithLocation(loc), ckpt.WithKeyFile(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	got := make([]byte, len(state))
	j2.Protect("state", got)
	if _, err := j2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, state) {
		t.Fatal("restored state differs")
	}
}

// TestErasureAnyTwoOfSix: six agent processes, every checkpoint in k=4 m=2
// fragments (one per node) and nothing else. For each of the 15 pairs of
// agents, both are killed with SIGKILL (the checkpoint's node loses its
// disk too when it is one of them, and comes back empty, as a replacement):
// ckpt fetch makes the checkpoint complete on its node again, from the
// fragments of the four left when its node was lost, and it verifies.
func TestErasureAnyTwoOfSix(t *testing.T) {
	procs := startAgents(t, 6, map[string]any{
		"erasure": map[string]any{"every": 1, "k": 4, "m": 2, "stripe_kib": 64},
	})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	loc := "agent://" + procs[0].addr + "/sim"
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("erasure test key 0123456789abcdef"), 0o600)
	ctx := context.Background()
	j, err := ckpt.Open("job", ckpt.WithLocation(loc), ckpt.WithKeyFile(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, 3<<20)
	fillRandom(state, 5, 6)
	j.Protect("state", state)
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	info, _ := j.LastCommit()
	if n, err := agentClient(t, procs[0]).WaitIdle(ctx, 30*time.Second); err != nil || n != 0 {
		t.Fatalf("flush: %d %v", n, err)
	}
	if r, err := levels.LoadRecord(ctx, agentClient(t, procs[0]), info.ID, levels.Erasure); err != nil || !r.Complete || len(r.Fragments) != 6 {
		t.Fatalf("erasure record: %+v %v", r, err)
	}
	for a := 0; a < 6; a++ {
		for b := a + 1; b < 6; b++ {
			procs[a].kill()
			procs[b].kill()
			lost := a == 0
			if lost {
				os.RemoveAll(procs[0].dir)
				procs[0].start(t)
			}
			cmd := exec.Command(ckptBin, "fetch", "job", "--from", loc, "--json", "--key-file", keyFile)
			cmd.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
			out, err := cmd.Output()
			var res fetchJSON
			if err == nil {
				err = json.Unmarshal(out, &res)
			}
			want := levels.Local
			if lost {
				want = levels.Erasure
			}
			if err != nil || res.ID != info.ID || res.Level != want {
				t.Fatalf("n%d and n%d killed: fetch: %v %s", a, b, err, out)
			}
			vr := runCkpt(t, loc, "--key-file", keyFile, "verify", "job")
			wantCode(t, vr, exitOK, fmt.Sprintf("verify with n%d and n%d killed", a, b))
			for _, i := range []int{a, b} {
				if procs[i].cmd == nil {
					procs[i].start(t)
				}
			}
		}
	}
}

// vmHWM is a process's peak resident set size in MiB (Linux).
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

// TestLevelsTiming measures (CKPT_BENCH_LEVELS=1; size CKPT_BENCH_LEVELS_MIB,
// default 256; agents CKPT_BENCH_LEVELS_AGENTS, default 6) how long a
// library checkpoint takes to be complete at each level on N agent
// processes on loopback: partner, erasure k=N-2 m=2 and a durable
// directory, every checkpoint; the program's blocking time; the agents'
// peak RSS. docs/PERFORMANCE.md, "Levels and agent".
func TestLevelsTiming(t *testing.T) {
	if os.Getenv("CKPT_BENCH_LEVELS") == "" {
		t.Skip("set CKPT_BENCH_LEVELS=1")
	}
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("CKPT_BENCH_LEVELS_MIB")); err == nil {
		mib = v
	}
	nodes := 6
	if v, err := strconv.Atoi(os.Getenv("CKPT_BENCH_LEVELS_AGENTS")); err == nil && v >= 3 {
		nodes = v
	}
	durable := filepath.Join(t.TempDir(), "durable")
	procs := startAgents(t, nodes, map[string]any{
		"partner": map[string]any{"every": 1},
		"erasure": map[string]any{"every": 1, "k": nodes - 2, "m": 2},
		"durable": map[string]any{"every": 1, "location": durable},
	})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	loc := "agent://" + procs[0].addr + "/sim"
	ctx := context.Background()
	j, err := ckpt.Open("bench", ckpt.WithLocation(loc), ckpt.WithCodec("none"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	state := make([]byte, mib<<20)
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := 0; i+8 <= len(state); i += 8 {
		binary.LittleEndian.PutUint64(state[i:], rnd.Uint64())
	}
	j.Protect("state", state)
	a := agentClient(t, procs[0])
	for round := 1; round <= 2; round++ {
		if round == 2 { // a second checkpoint, a quarter of it changed
			for i := 0; i < len(state)/4; i += 8 {
				binary.LittleEndian.PutUint64(state[i:], rnd.Uint64())
			}
		}
		t0 := time.Now()
		if err := j.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		blocked := time.Since(t0)
		if err := j.Wait(); err != nil {
			t.Fatal(err)
		}
		l1 := time.Since(t0)
		info, _ := j.LastCommit()
		done := map[string]time.Duration{}
		for len(done) < 3 {
			for _, l := range []string{levels.Partner, levels.Erasure, levels.Durable} {
				if _, ok := done[l]; ok {
					continue
				}
				if r, err := levels.LoadRecord(ctx, a, info.ID, l); err == nil {
					if !r.Complete {
						t.Fatalf("%s: %s", l, r.Error)
					}
					done[l] = time.Since(t0)
				}
			}
			if time.Since(t0) > 5*time.Minute {
				t.Fatal("levels not complete after 5 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%d agents, checkpoint %d, %d MiB (%d MiB new): Checkpoint blocked %v; complete at L1 %v, L2 partner %v, L3 erasure %d+2 %v, L4 durable %v",
			nodes, round, mib, info.NewBytes>>20, blocked.Round(time.Millisecond), l1.Round(time.Millisecond),
			done[levels.Partner].Round(time.Millisecond), nodes-2, done[levels.Erasure].Round(time.Millisecond), done[levels.Durable].Round(time.Millisecond))
	}
	var rss []string
	for _, p := range procs {
		rss = append(rss, fmt.Sprintf("%s %.0f", p.name, vmHWM(p.cmd.Process.Pid)))
	}
	t.Logf("agents' peak RSS (MiB): %s", strings.Join(rss, ", "))
}
