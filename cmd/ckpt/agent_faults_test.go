package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
)

// metric reads one counter of an agent's /metrics (0 when absent).
func metric(t *testing.T, p *agentProc, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != ' ' && l[len(name)] != '{') {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// inFlight reports whether an agent is receiving a fragment right now: its
// fragment store's staging directory holds a file.
func inFlight(p *agentProc) bool {
	ents, _ := os.ReadDir(filepath.Join(p.dir, "sim", "fragments", ".tmp"))
	return len(ents) > 0
}

// TestErasureKillsDuringFlush: k=4 m=2 over six agent processes. The
// second checkpoint's fragments are on their way when two agents are
// SIGKILLed mid-upload. That checkpoint must never appear complete at L3
// (its record says so, and recovery does not serve it), and the first one
// stays restorable: the killed agents come back with what they had stored,
// the checkpoint's own node is lost with its disk and another agent is
// killed, and ckpt fetch rebuilds the first checkpoint from the four
// fragments left.
func TestErasureKillsDuringFlush(t *testing.T) {
	procs := startAgents(t, 6, map[string]any{
		"erasure": map[string]any{"every": 1, "k": 4, "m": 2, "stripe_kib": 64},
		// One try only: the interrupted flush stays interrupted for the
		// rest of the test (retries are TestFlushRetry's subject).
		"retry": map[string]any{"attempts": 1},
	})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	loc := "agent://" + procs[0].addr + "/sim"
	ctx := context.Background()
	n0 := agentClient(t, procs[0])

	checkpoint := func(seed uint64, size int) ckpt.CommitInfo {
		j, err := ckpt.Open("job", ckpt.WithLocation(loc))
		if err != nil {
			t.Fatal(err)
		}
		state := make([]byte, size)
		fillRandom64(state, seed, seed)
		j.Protect("state", state)
		if err := j.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		info, _ := j.LastCommit()
		return info
	}

	first := checkpoint(1, 2<<20)
	if n, err := n0.WaitIdle(ctx, 30*time.Second); err != nil || n != 0 {
		t.Fatalf("flush of the first checkpoint: %d %v", n, err)
	}
	if r, err := levels.LoadRecord(ctx, n0, first.ID, levels.Erasure); err != nil || !r.Complete {
		t.Fatalf("first checkpoint at L3: %+v %v", r, err)
	}

	// The second checkpoint is large enough that its upload takes a while;
	// n4 and n5 die as soon as both are receiving their fragments.
	errsBefore := metric(t, procs[0], "ckpt_agent_flush_errors_total")
	done := make(chan ckpt.CommitInfo, 1)
	go func() { done <- checkpoint(2, 96<<20) }()
	deadline := time.Now().Add(60 * time.Second)
	for !(inFlight(procs[4]) && inFlight(procs[5])) {
		if time.Now().After(deadline) {
			t.Fatal("the second checkpoint's fragments never reached n4 and n5")
		}
		time.Sleep(time.Millisecond)
	}
	procs[4].kill()
	procs[5].kill()
	second := <-done
	// The level record is written when the flush ends.
	r, err := levels.LoadRecord(ctx, n0, second.ID, levels.Erasure)
	for errors.Is(err, backend.ErrNotExist) {
		if time.Now().After(deadline) {
			t.Fatal("n0 never ended the interrupted flush")
		}
		time.Sleep(5 * time.Millisecond)
		r, err = levels.LoadRecord(ctx, n0, second.ID, levels.Erasure)
	}
	if err != nil || r.Complete {
		t.Fatalf("interrupted checkpoint's L3 record: %+v %v", r, err)
	}
	if m := metric(t, procs[0], "ckpt_agent_flush_errors_total"); m != errsBefore+1 {
		t.Fatalf("flush errors in /metrics: %v, want %v", m, errsBefore+1)
	}
	for _, p := range procs[4:] {
		for i := range 6 {
			if _, err := os.Stat(filepath.Join(p.dir, "sim", "fragments", levels.FragmentName(second.ID, i))); err == nil {
				t.Fatalf("%s stored a whole fragment %d of the second checkpoint before it was killed: the kill was not mid-upload", p.name, i)
			}
		}
	}

	// The killed agents restart with their stores; then the checkpoint's
	// node is lost with its disk, and n1 is killed.
	procs[4].start(t)
	procs[5].start(t)
	procs[0].kill()
	procs[1].kill()
	os.RemoveAll(procs[0].dir)
	procs[0].start(t)

	fetch := func(ref string) (fetchJSON, error) {
		cmd := exec.Command(ckptBin, "fetch", ref, "--from", loc, "--json")
		cmd.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
		out, err := cmd.Output()
		var res fetchJSON
		if err == nil {
			err = json.Unmarshal(out, &res)
		}
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		return res, err
	}
	res, err := fetch(fmt.Sprintf("job@%d", second.Seq))
	if err == nil {
		t.Fatalf("the interrupted checkpoint was served from %s (%s)", res.Level, res.Where)
	}
	if !strings.Contains(err.Error(), "no level holds a complete copy") {
		t.Fatalf("fetch of the interrupted checkpoint: %v", err)
	}
	t.Logf("fetch of the interrupted checkpoint: %v", err)
	res, err = fetch("job")
	if err != nil || res.ID != first.ID || res.Level != levels.Erasure {
		t.Fatalf("fetch after the faults: %+v %v (want %s from erasure)", res, err, first.ID)
	}
	vr := runCkpt(t, loc, "verify", "job")
	wantCode(t, vr, exitOK, "verify of the rebuilt first checkpoint")
}

// TestAgentsLostPartnerAndDurable: three agent processes, a partner copy of
// every checkpoint and a durable copy of every second one. The
// checkpoint's node is SIGKILLed and loses its disk: its replacement gets
// the newest checkpoint back from the partner. Then every agent is killed
// and every disk lost: a new cluster with the same durable location gets
// back the newest checkpoint that reached L4, not the newer one that did
// not.
func TestAgentsLostPartnerAndDurable(t *testing.T) {
	durable := filepath.Join(t.TempDir(), "durable")
	procs := startAgents(t, 3, map[string]any{
		"partner": map[string]any{"every": 1},
		"durable": map[string]any{"every": 2, "location": durable},
	})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	loc := "agent://" + procs[0].addr + "/sim"
	ctx := context.Background()
	j, err := ckpt.Open("job", ckpt.WithLocation(loc))
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, 4<<20)
	j.Protect("state", state)
	var infos []ckpt.CommitInfo
	for i := range 3 {
		fillRandom(state, uint64(i), 9)
		if err := j.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := j.Wait(); err != nil {
			t.Fatal(err)
		}
		info, _ := j.LastCommit()
		infos = append(infos, info)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := agentClient(t, procs[0]).WaitIdle(ctx, 30*time.Second); err != nil || n != 0 {
		t.Fatalf("flush: %d %v", n, err)
	}
	fetch := func(ref string) fetchJSON {
		t.Helper()
		cmd := exec.Command(ckptBin, "fetch", ref, "--from", loc, "--json")
		cmd.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("fetch %s: %v: %s", ref, err, ee.Stderr)
		}
		var res fetchJSON
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("fetch %s: %v: %s", ref, err, out)
		}
		return res
	}

	// The node is lost: its partner serves the newest checkpoint.
	procs[0].kill()
	os.RemoveAll(procs[0].dir)
	procs[0].start(t)
	if res := fetch("job"); res.ID != infos[2].ID || res.Level != levels.Partner {
		t.Fatalf("after the node's loss: got %s from %s, want %s from the partner", res.ID, res.Level, infos[2].ID)
	}
	wantCode(t, runCkpt(t, loc, "verify", "job"), exitOK, "verify after the partner copy")

	// Every agent and every disk is lost; only durable storage is left.
	for _, p := range procs {
		p.kill()
		os.RemoveAll(p.dir)
	}
	for _, p := range procs {
		p.start(t)
	}
	res := fetch("job")
	if res.ID != infos[1].ID || res.Level != levels.Durable {
		t.Fatalf("after losing every agent: got %s (seq %d) from %s, want %s (seq %d, the newest at L4) from durable", res.ID, res.Seq, res.Level, infos[1].ID, infos[1].Seq)
	}
	wantCode(t, runCkpt(t, loc, "verify", "job"), exitOK, "verify after the durable copy")
}

// TestErasurePeersCutOff: two agents are cut off (SIGSTOP: their
// connections stay open and nothing moves, as in a partition) while the
// checkpoint's fragments are on their way. The node gives them up after
// the stall timeout instead of waiting forever, the four reachable nodes
// still get their fragments (a stalled peer must not hold the others up
// until they give the node up in turn), the checkpoint is not complete at
// L3 meanwhile, and once the agents are back the retry completes it.
func TestErasurePeersCutOff(t *testing.T) {
	procs := startAgents(t, 6, map[string]any{
		"erasure": map[string]any{"every": 1, "k": 4, "m": 2, "stripe_kib": 64},
		"retry":   map[string]any{"backoff_ms": 200, "max_backoff_ms": 500},
	}, map[string]any{"limits": map[string]any{"stall_timeout_ms": 1500}})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	loc := "agent://" + procs[0].addr + "/sim"
	ctx := context.Background()
	n0 := agentClient(t, procs[0])

	j, err := ckpt.Open("job", ckpt.WithLocation(loc))
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, 96<<20)
	fillRandom64(state, 3, 3)
	j.Protect("state", state)
	errsBefore := metric(t, procs[0], "ckpt_agent_flush_errors_total")
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !(inFlight(procs[4]) && inFlight(procs[5])) {
		if time.Now().After(deadline) {
			t.Fatal("the fragments never reached n4 and n5")
		}
		time.Sleep(time.Millisecond)
	}
	stopped := time.Now()
	cont := func() {
		for _, p := range procs[4:] {
			p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	for _, p := range procs[4:] {
		p.cmd.Process.Signal(syscall.SIGSTOP)
	}
	defer cont()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	info, _ := j.LastCommit()
	// The level record is written when the flush ends.
	r, err := levels.LoadRecord(ctx, n0, info.ID, levels.Erasure)
	for errors.Is(err, backend.ErrNotExist) {
		if time.Now().After(deadline) {
			t.Fatal("n0 still waits on the cut-off agents")
		}
		time.Sleep(5 * time.Millisecond)
		r, err = levels.LoadRecord(ctx, n0, info.ID, levels.Erasure)
	}
	gaveUp := time.Since(stopped)
	if err != nil || r.Complete {
		t.Fatalf("L3 record with two fragments cut off: %+v %v", r, err)
	}
	if m := metric(t, procs[0], "ckpt_agent_flush_errors_total"); m != errsBefore+1 {
		t.Fatalf("flush errors in /metrics: %v, want %v", m, errsBefore+1)
	}
	for i, f := range r.Fragments {
		if f.OK != (i < 4) {
			t.Fatalf("fragment %d on %s stored: %v (want the four reachable nodes only): %s", i, f.Node, f.OK, r.Error)
		}
	}
	if strings.Count(r.Error, "no progress") != 2 {
		t.Fatalf("the level record does not say the two peers stalled: %q", r.Error)
	}
	t.Logf("n0 gave the cut-off peers up %v after they stopped: %s", gaveUp.Round(time.Millisecond), r.Error)
	cont()
	// The retry (backoff 200 ms) completes the level.
	for {
		r, err := levels.LoadRecord(ctx, n0, info.ID, levels.Erasure)
		if err == nil && r.Complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not complete at L3 after the agents came back: %+v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentGCWithoutKey: ckpt gc on an agent:// repository has the agent
// collect its store, which it can do without the repository's key: the
// chunks of a removed encrypted checkpoint go, the kept one still
// verifies.
func TestAgentGCWithoutKey(t *testing.T) {
	procs := startAgents(t, 1, map[string]any{})
	t.Setenv(backend.AgentTokenEnv, agentTok)
	loc := "agent://" + procs[0].addr + "/sim"
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("gc test key 0123456789abcdef0123"), 0o600)
	ctx := context.Background()
	j, err := ckpt.Open("job", ckpt.WithLocation(loc), ckpt.WithKeyFile(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, 4<<20)
	j.Protect("state", state)
	for i := range 2 {
		fillRandom(state, uint64(i), 7)
		if err := j.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if err := j.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, runCkpt(t, loc, "--key-file", keyFile, "rm", "job@1"), exitOK, "rm job@1")
	res := runCkpt(t, loc, "gc")
	wantCode(t, res, exitOK, "gc without the key")
	if !strings.Contains(res.stderr, "1 checkpoints") || strings.Contains(res.stderr, "removed 0 chunks") {
		t.Fatalf("gc removed nothing: %s", res.stderr)
	}
	res = runCkpt(t, loc, "gc")
	if !strings.Contains(res.stderr, "removed 0 chunks") {
		t.Fatalf("second gc: %s", res.stderr)
	}
	wantCode(t, runCkpt(t, loc, "--key-file", keyFile, "verify", "job"), exitOK, "verify the kept checkpoint")
	t.Log(strings.TrimSpace(res.stderr))
}
