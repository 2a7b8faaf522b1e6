package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/agent"
	"github.com/ckpt/ckpt/internal/agent/agenttest"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/vfs"
)

const tok = "group-token-for-the-agent-tests"

func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestAgentMemoryBounded: a node's store holds many small checkpoints
// (1,000; CKPT_TEST_AGENT_CHECKPOINTS=5000 for more) that no level has seen
// yet, as after a restart. The agent scans its store and flushes every one
// to its partner with at most limits.max_queue jobs in memory; the heap
// (in this process, the agents' and the test's) stays bounded meanwhile.
func TestAgentMemoryBounded(t *testing.T) {
	n := 1000 // 5,000: 63 s to write them (the writer lists every manifest per commit), 23 s to flush
	if v, err := strconv.Atoi(os.Getenv("CKPT_TEST_AGENT_CHECKPOINTS")); err == nil {
		n = v
	}
	const maxQueue = 64
	nodes := agenttest.Cluster(t, 2, map[string]string{"sim": tok},
		agent.LevelsConfig{Partner: agent.PartnerConfig{Every: 1}},
		func(c *agent.Config) { c.Limits.MaxQueue = maxQueue })
	nodes[0].Stop()
	ctx := context.Background()
	t0 := time.Now()
	func() {
		st, err := backend.OpenLocal(vfs.OS, filepath.Join(nodes[0].Config.DataDir, "sim"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := repo.Init(ctx, st, repo.InitOptions{ChunkSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		for i := range n {
			w, err := r.NewWriter(ctx, repo.WriterOptions{Name: fmt.Sprintf("job%d", i%50), Kind: repo.KindLibrary})
			if err != nil {
				t.Fatal(err)
			}
			ow, _ := w.Create("x", "bytes", nil)
			copy(buf, fmt.Sprintf("checkpoint %d", i))
			ow.Write(buf)
			ow.Close()
			if _, err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}()
	t.Logf("%d checkpoints written in %v", n, time.Since(t0).Round(time.Millisecond))
	runtime.GC()
	base := heapInuse()

	var peak atomic.Uint64
	var maxQ atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	nodes[0].Restart(t)
	go func() {
		defer wg.Done()
		for {
			if h := heapInuse(); h > peak.Load() {
				peak.Store(h)
			}
			if q := int64(nodes[0].Server.QueueLen()); q > maxQ.Load() {
				maxQ.Store(q)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	t1 := time.Now()
	a, err := backend.OpenAgent(ctx, nodes[0].Location("sim"), tok)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := a.WaitIdle(ctx, 5*time.Minute); err != nil || left != 0 {
		t.Fatalf("flush: %d left, %v", left, err)
	}
	close(stop)
	wg.Wait()
	ents, _ := os.ReadDir(filepath.Join(nodes[1].Config.DataDir, "sim", "manifests"))
	if len(ents) != n {
		t.Fatalf("the partner holds %d of %d checkpoints", len(ents), n)
	}
	grow := int64(peak.Load()) - int64(base)
	t.Logf("%d checkpoints flushed to the partner in %v; heap in use %.1f MiB before, peak %.1f MiB (+%.1f MiB); flush queue at most %d",
		n, time.Since(t1).Round(time.Millisecond), float64(base)/(1<<20), float64(peak.Load())/(1<<20), float64(grow)/(1<<20), maxQ.Load())
	if maxQ.Load() > maxQueue {
		t.Fatalf("queue held %d jobs (limit %d)", maxQ.Load(), maxQueue)
	}
	if grow > 32<<20 {
		t.Fatalf("heap grew by %d MiB while flushing %d checkpoints", grow>>20, n)
	}
}
