package levels_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/agent"
	"github.com/ckpt/ckpt/internal/agent/agenttest"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/s3test"
)

const tok = "group-token-for-the-tests"

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func client(t testing.TB, nd *agenttest.Node) *backend.Agent {
	t.Helper()
	a, err := backend.OpenAgent(context.Background(), nd.Location("sim"), tok)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// write commits checkpoint name with object "grid" = data on the agent.
func write(t testing.TB, be backend.Backend, key []byte, name string, data []byte) (*repo.Repository, *repo.Manifest) {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, be, key)
	if errors.Is(err, repo.ErrNotRepository) {
		r, err = repo.Init(ctx, be, repo.InitOptions{Key: key, ChunkSize: 64 << 10})
	}
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Name: name, Kind: repo.KindLibrary})
	if err != nil {
		t.Fatal(err)
	}
	ow, _ := w.Create("grid", "bytes", nil)
	ow.Write(data)
	ow.Close()
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return r, m
}

func waitIdle(t testing.TB, nodes ...*agenttest.Node) {
	t.Helper()
	for _, nd := range nodes {
		if nd.Server == nil {
			continue
		}
		if n, err := client(t, nd).WaitIdle(context.Background(), 20*time.Second); err != nil || n != 0 {
			t.Fatalf("%s: flush queue not drained: %d %v", nd.Name, n, err)
		}
	}
}

// waitSettled is waitIdle that also waits for failed flushes' retries: a
// level that failed on a loaded machine is tried again after its backoff
// (the test says so, the level records hold the error).
func waitSettled(t testing.TB, nodes ...*agenttest.Node) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, nd := range nodes {
		for {
			waitIdle(t, nd)
			r := nd.Server.RetriesScheduled()
			if r == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d failed flushes still waiting for a retry", nd.Name, r)
			}
			t.Logf("%s: %d failed flushes waiting for a retry (see the level records' errors)", nd.Name, r)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func record(t testing.TB, be backend.Backend, id, level string) *levels.Record {
	t.Helper()
	r, err := levels.LoadRecord(context.Background(), be, id, level)
	if err != nil {
		t.Fatalf("level record %s: %v", level, err)
	}
	return r
}

func topology(t testing.TB, nd *agenttest.Node, durable string) levels.Cluster {
	c := levels.Cluster{Self: nd.Name, Nodes: map[string]string{}, Group: "sim", Token: tok, Durable: durable}
	for n := range nd.Config.Peers {
		c.Nodes[n] = nd.Config.Peers[n]
	}
	c.Nodes[nd.Name] = nd.Addr
	return c
}

func recoverOn(t testing.TB, nd *agenttest.Node, key []byte, ref, durable string) (*levels.Result, error) {
	t.Helper()
	target := client(t, nd)
	target.Origin = "recovery"
	return levels.Recover(context.Background(), levels.RecoverOptions{Ref: ref, Key: key, Target: target, Cluster: topology(t, nd, durable)})
}

func readGrid(t testing.TB, be backend.Backend, key []byte, id string) []byte {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, be, key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	or, err := r.OpenObject(m, "grid")
	if err != nil {
		t.Fatal(err)
	}
	b, err := or.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLevelsFlushAndRecover: five agents, every level on every checkpoint
// (erasure k=3, m=2). The node's store is lost, then its partner too, then
// a fragment is corrupted: each time the newest checkpoint comes back on
// a replacement node, from the fastest level that still has it.
func TestLevelsFlushAndRecover(t *testing.T) {
	durable := filepath.Join(t.TempDir(), "durable")
	nodes := agenttest.Cluster(t, 5, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1},
		Erasure: agent.ErasureConfig{Every: 1, K: 3, M: 2, StripeKiB: 64},
		Durable: agent.DurableConfig{Every: 1, Location: durable},
	})
	n0 := nodes[0]
	data1 := randBytes(1, 700<<10)
	data2 := append(randBytes(2, 300<<10), data1[300<<10:]...)
	write(t, client(t, n0), nil, "job", data1)
	_, m2 := write(t, client(t, n0), nil, "job", data2)
	waitIdle(t, n0)
	for _, l := range []string{levels.Local, levels.Partner, levels.Erasure, levels.Durable} {
		if r := record(t, client(t, n0), m2.ID(), l); !r.Complete {
			t.Fatalf("%s not complete: %+v", l, r)
		}
	}
	if w := record(t, client(t, n0), m2.ID(), levels.Partner).Where; w != nodes[1].Location("sim") {
		t.Fatalf("partner copy went to %s", w)
	}
	if r := record(t, client(t, n0), m2.ID(), levels.Erasure); len(r.Fragments) != 5 {
		t.Fatalf("erasure record: %+v", r)
	}
	// The local copy is there: it serves.
	res, err := recoverOn(t, n0, nil, "job", "")
	if err != nil || res.Level != levels.Local || res.Manifest.ID() != m2.ID() {
		t.Fatalf("recover with the local copy: %+v %v", res, err)
	}

	// Node 0 is replaced (empty store): the partner serves.
	n0.Wipe(t)
	n0.Restart(t)
	res, err = recoverOn(t, n0, nil, "job", durable+"/sim")
	if err != nil || res.Level != levels.Partner || res.Manifest.ID() != m2.ID() {
		t.Fatalf("recover from partner: %+v %v", res, err)
	}
	if got := readGrid(t, client(t, n0), nil, m2.ID()); !bytes.Equal(got, data2) {
		t.Fatal("data restored from the partner differs")
	}

	// Node 0 and its partner lost: any 3 of 5 fragments rebuild it.
	n0.Wipe(t)
	nodes[1].Wipe(t)
	n0.Restart(t)
	res, err = recoverOn(t, n0, nil, "job", "")
	if err != nil || res.Level != levels.Erasure || res.Manifest.ID() != m2.ID() {
		t.Fatalf("recover from fragments: %+v %v", res, err)
	}
	if got := readGrid(t, client(t, n0), nil, m2.ID()); !bytes.Equal(got, data2) {
		t.Fatal("data rebuilt from fragments differs")
	}

	// One of the three fragments left is corrupted: it is detected and
	// treated as lost, too few remain, and durable storage serves.
	n0.Wipe(t)
	n0.Restart(t)
	corruptFragment(t, nodes[2], m2.ID())
	res, err = recoverOn(t, n0, nil, "job", durable+"/sim")
	if err != nil || res.Level != levels.Durable || res.Manifest.ID() != m2.ID() {
		t.Fatalf("recover from durable: %+v %v", res, err)
	}
	if !strings.Contains(strings.Join(res.Tried, "\n"), "intact fragments") {
		t.Fatalf("the corrupt fragment was not reported: %v", res.Tried)
	}
	if got := readGrid(t, client(t, n0), nil, m2.ID()); !bytes.Equal(got, data2) {
		t.Fatal("data from durable differs")
	}
	// An older checkpoint by sequence number.
	res, err = recoverOn(t, n0, nil, "job@1", durable+"/sim")
	if err != nil || res.Manifest.Seq != 1 {
		t.Fatalf("recover job@1: %+v %v", res, err)
	}
	if got := readGrid(t, client(t, n0), nil, res.Manifest.ID()); !bytes.Equal(got, data1) {
		t.Fatal("job@1 differs")
	}
}

// corruptFragment flips a byte in the shard data of node's fragment of id.
func corruptFragment(t testing.TB, nd *agenttest.Node, id string) {
	t.Helper()
	dir := filepath.Join(nd.Config.DataDir, "sim", "fragments")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), id+".") {
			p := filepath.Join(dir, e.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-100] ^= 0x40
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no fragment of %s on %s", id, nd.Name)
}

// TestErasureCorruptShardRepaired: a corrupt shard among k+m is detected by
// its checksum and rebuilt from the others.
func TestErasureCorruptShardRepaired(t *testing.T) {
	nodes := agenttest.Cluster(t, 4, map[string]string{"sim": tok}, agent.LevelsConfig{
		Erasure: agent.ErasureConfig{Every: 1, K: 2, M: 2, StripeKiB: 16},
	})
	data := randBytes(3, 200<<10)
	_, m := write(t, client(t, nodes[0]), nil, "job", data)
	waitIdle(t, nodes[0])
	corruptFragment(t, nodes[1], m.ID())
	nodes[0].Wipe(t)
	nodes[0].Restart(t)
	res, err := recoverOn(t, nodes[0], nil, "job", "")
	if err != nil || res.Level != levels.Erasure {
		t.Fatalf("%+v %v", res, err)
	}
	if res.Decode.DamagedShards == 0 {
		t.Fatal("the corrupt shard went unnoticed")
	}
	if got := readGrid(t, client(t, nodes[0]), nil, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("rebuilt data differs")
	}
}

// TestEncryptedCheckpointFlush: the agent cannot read an encrypted
// manifest; the committed notification the agent backend sends after the
// repository's commit gives it the chunk list,
// and recovery on a replacement node with the key works.
func TestEncryptedCheckpointFlush(t *testing.T) {
	key := []byte("a key of the repository, 32 byte")
	nodes := agenttest.Cluster(t, 4, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1, Node: "node2"},
		Erasure: agent.ErasureConfig{Every: 1, K: 2, M: 2},
	})
	data := randBytes(4, 300<<10)
	a := client(t, nodes[0])
	// A copy made with an origin (a flush, a recovery) is not told to the
	// agent: it stays at L1.
	ac := client(t, nodes[0])
	ac.Origin = "elsewhere"
	_, mc := write(t, ac, key, "copy", data)
	waitIdle(t, nodes[0])
	if _, err := levels.LoadRecord(context.Background(), a, mc.ID(), levels.Partner); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("a copy with an origin was flushed: %v", err)
	}
	// The repository tells the agent of its commit (backend.CommitWatcher).
	_, m := write(t, a, key, "enc", data)
	waitIdle(t, nodes[0])
	if r := record(t, a, m.ID(), levels.Partner); !r.Complete || r.Where != nodes[2].Location("sim") {
		t.Fatalf("partner: %+v", r)
	}
	nodes[0].Wipe(t)
	nodes[2].Wipe(t)
	nodes[0].Restart(t)
	res, err := recoverOn(t, nodes[0], key, "enc", "")
	if err != nil || res.Level != levels.Erasure {
		t.Fatalf("%+v %v", res, err)
	}
	if got := readGrid(t, client(t, nodes[0]), key, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("rebuilt data differs")
	}
}

// TestDurableS3: L4 to a real S3 server; every agent lost, the durable
// copy restores onto a replacement node.
func TestDurableS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	loc := srv.Location("ckpt/durable")
	nodes := agenttest.Cluster(t, 2, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 2},
		Durable: agent.DurableConfig{Every: 1, Location: loc},
	})
	data := randBytes(5, 500<<10)
	_, m := write(t, client(t, nodes[0]), nil, "job", data)
	waitIdle(t, nodes[0])
	if r := record(t, client(t, nodes[0]), m.ID(), levels.Durable); !r.Complete || r.Where != loc+"/sim" {
		t.Fatalf("durable: %+v", r)
	}
	if _, err := levels.LoadRecord(context.Background(), client(t, nodes[0]), m.ID(), levels.Partner); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("seq 1 went to the partner (every 2nd): %v", err)
	}
	for _, nd := range nodes {
		nd.Wipe(t)
	}
	nodes[0].Restart(t)
	res, err := recoverOn(t, nodes[0], nil, "job", loc+"/sim")
	if err != nil || res.Level != levels.Durable {
		t.Fatalf("%+v %v", res, err)
	}
	if got := readGrid(t, client(t, nodes[0]), nil, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("data from S3 differs")
	}
}

// TestPartnerDown: the partner is gone when the checkpoint is flushed: the
// flush fails with a clear error in the level record, the next node takes
// the copy, and nothing is lost; with every peer gone the record says why.
func TestPartnerDown(t *testing.T) {
	nodes := agenttest.Cluster(t, 3, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1, Node: "node1"},
	})
	nodes[1].Stop()
	_, m := write(t, client(t, nodes[0]), nil, "job", randBytes(6, 100<<10))
	waitIdle(t, nodes[0])
	if r := record(t, client(t, nodes[0]), m.ID(), levels.Partner); !r.Complete || r.Where != nodes[2].Location("sim") {
		t.Fatalf("fallback partner: %+v", r)
	}
	nodes[2].Stop()
	_, m2 := write(t, client(t, nodes[0]), nil, "job", randBytes(7, 100<<10))
	waitIdle(t, nodes[0])
	r := record(t, client(t, nodes[0]), m2.ID(), levels.Partner)
	if r.Complete || !strings.Contains(r.Error, "node1") || !strings.Contains(r.Error, "node2") {
		t.Fatalf("partner record with every peer down: %+v", r)
	}
	if got := readGrid(t, client(t, nodes[0]), nil, m2.ID()); len(got) != 100<<10 {
		t.Fatal("local copy damaged by a failed flush")
	}
	// The agent restarted with its peers back finishes the flush.
	nodes[2].Restart(t)
	nodes[0].Stop()
	nodes[0].Restart(t)
	waitIdle(t, nodes[0])
	if r := record(t, client(t, nodes[0]), m2.ID(), levels.Partner); !r.Complete {
		t.Fatalf("after restart: %+v", r)
	}
}

// failingSink takes n bytes of a fragment and then fails, as a peer that
// vanishes mid-transfer.
type failingSink struct{ n int64 }

func (f failingSink) PutFragment(ctx context.Context, name string, r io.Reader, size int64) error {
	io.CopyN(io.Discard, r, f.n)
	return fmt.Errorf("connection reset by peer")
}

type memSink struct {
	mu    sync.Mutex
	frags map[string][]byte
}

func (m *memSink) PutFragment(ctx context.Context, name string, r io.Reader, size int64) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(b)) != size {
		return fmt.Errorf("got %d of %d bytes", len(b), size)
	}
	m.mu.Lock()
	m.frags[name] = b
	m.mu.Unlock()
	return nil
}

func (m *memSink) GetFragment(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	b, ok := m.frags[name]
	if !ok {
		return nil, 0, backend.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (m *memSink) ListFragments(ctx context.Context, id string, fn func(string, int64) error) error {
	for n, b := range m.frags {
		if strings.HasPrefix(n, id) {
			if err := fn(n, int64(len(b))); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestEncodePeerVanishes: a sink dies mid-transfer: the error names its
// fragment, the others are stored, and they rebuild the checkpoint.
func TestEncodePeerVanishes(t *testing.T) {
	ctx := context.Background()
	src := backend.NewMem()
	data := randBytes(8, 400<<10)
	_, m := write(t, src, nil, "job", data)
	mem := &memSink{frags: map[string][]byte{}}
	sinks := []levels.FragmentSink{mem, failingSink{n: 5000}, mem, mem}
	ok, err := levels.Encode(ctx, levels.EncodeInput{Src: src, ID: m.ID(), Chunks: levels.ChunkIDs(m), Seq: m.Seq, K: 2, M: 2, Stripe: 8 << 10}, sinks)
	if err == nil || !strings.Contains(err.Error(), "fragment 1") || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("a vanished peer: %v", err)
	}
	if !ok[0] || ok[1] || !ok[2] || !ok[3] {
		t.Fatalf("stored: %v", ok)
	}
	refs, lost := levels.FindFragments(ctx, []levels.Holder{{Node: "mem", Src: mem}}, m.ID())
	if len(refs) != 3 || len(lost) != 0 {
		t.Fatalf("found %d fragments, lost %v", len(refs), lost)
	}
	dst := backend.NewMem()
	if _, _, err := levels.Decode(ctx, refs, m.ID(), dst); err != nil {
		t.Fatal(err)
	}
	if got := readGrid(t, dst, nil, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("rebuilt data differs")
	}
	// Fewer than k intact fragments: a clear error, nothing committed.
	delete(mem.frags, levels.FragmentName(m.ID(), 0))
	delete(mem.frags, levels.FragmentName(m.ID(), 2))
	refs, _ = levels.FindFragments(ctx, []levels.Holder{{Node: "mem", Src: mem}}, m.ID())
	dst2 := backend.NewMem()
	if _, _, err := levels.Decode(ctx, refs, m.ID(), dst2); err == nil || !strings.Contains(err.Error(), "k=2") {
		t.Fatalf("decode from too few fragments: %v", err)
	}
	if _, err := dst2.Stat(ctx, backend.Handle{Kind: backend.Manifest, Name: m.ID()}); !errors.Is(err, backend.ErrNotExist) {
		t.Fatal("a failed rebuild committed a manifest")
	}
}

// TestFlushRetry: the partner is down when a checkpoint is flushed. The
// level record and /metrics carry the error and the next try; the flusher
// tries again with backoff, and once the partner is back up the copy is
// made, without restarting the agent. With the tries used up it gives up,
// and the record says no retry is due.
func TestFlushRetry(t *testing.T) {
	nodes := agenttest.Cluster(t, 2, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1},
		Retry:   agent.RetryConfig{Attempts: 50, BackoffMS: 20, MaxBackoffMS: 100},
	})
	nodes[1].Stop()
	ctx := context.Background()
	a := client(t, nodes[0])
	_, m := write(t, a, nil, "job", randBytes(9, 100<<10))
	var r *levels.Record
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		r, err = levels.LoadRecord(ctx, a, m.ID(), levels.Partner)
		if err == nil && r.Attempts >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retries: %+v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r.Complete || !strings.Contains(r.Error, "node1") || r.Retry == nil {
		t.Fatalf("failing partner record: %+v", r)
	}
	metrics := func() string {
		resp, err := http.Get("http://" + nodes[0].Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// A retry may be running at the moment of a scrape (then it is queued,
	// not scheduled): wait for a scrape that shows it backing off.
	for deadline := time.Now().Add(10 * time.Second); ; {
		mt := metrics()
		if strings.Contains(mt, `ckpt_agent_flush_last_error{error="no partner took the copy: node node1:`) &&
			strings.Contains(mt, "ckpt_agent_flush_retries_scheduled 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics without the error or the retry:\n%s", grepLines(mt, "flush"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	nodes[1].Restart(t)
	deadline = time.Now().Add(10 * time.Second)
	for {
		r, _ = levels.LoadRecord(ctx, a, m.ID(), levels.Partner)
		if r != nil && r.Complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partner is back but the copy was not made: %+v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := readGrid(t, client(t, nodes[1]), nil, m.ID()); len(got) != 100<<10 {
		t.Fatal("partner copy incomplete")
	}
	if mt := metrics(); strings.Contains(mt, "ckpt_agent_flush_last_error{") || !strings.Contains(mt, "ckpt_agent_flush_retries_scheduled 0") {
		t.Fatalf("metrics after the retry succeeded:\n%s", grepLines(mt, "flush"))
	}
}

// TestFlushRetryGivesUp: the tries are bounded.
func TestFlushRetryGivesUp(t *testing.T) {
	nodes := agenttest.Cluster(t, 2, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1},
		Retry:   agent.RetryConfig{Attempts: 3, BackoffMS: 10, MaxBackoffMS: 20},
	})
	nodes[1].Stop()
	a := client(t, nodes[0])
	_, m := write(t, a, nil, "job", randBytes(10, 10<<10))
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := levels.LoadRecord(context.Background(), a, m.ID(), levels.Partner)
		if err == nil && r.Attempts == 3 {
			if r.Retry != nil || r.Complete {
				t.Fatalf("last try: %+v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tries: %+v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if r := record(t, a, m.ID(), levels.Partner); r.Attempts != 3 {
		t.Fatalf("tried again after the last try: %+v", r)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func countFiles(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(p, "/.tmp/") {
			n++
		}
		return nil
	})
	return n
}

// TestRetentionAndGC: an encrypted repository; the origin keeps the newest
// checkpoint of three (the library's keep-N): the partner copies and the
// fragments of the two it removed go from every node; the holder's gc
// (without the key: chunk lists come from level records) frees their
// chunks, waits for a writer holding the lock, and the kept checkpoint
// still restores from the partner.
func TestRetentionAndGC(t *testing.T) {
	key := []byte("a key of the repository, 32 byte")
	nodes := agenttest.Cluster(t, 3, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1, Node: "node1"},
		Erasure: agent.ErasureConfig{Every: 1, K: 2, M: 1, StripeKiB: 64},
	})
	ctx := context.Background()
	a := client(t, nodes[0])
	var r *repo.Repository
	var ms []*repo.Manifest
	var last []byte
	for i := range 3 {
		last = randBytes(uint64(20+i), 300<<10)
		var m *repo.Manifest
		r, m = write(t, a, key, "job", last)
		ms = append(ms, m)
	}
	waitSettled(t, nodes[0])
	holder := filepath.Join(nodes[1].Config.DataDir, "sim")
	if n := countFiles(t, filepath.Join(holder, "manifests")); n != 3 {
		t.Fatalf("partner holds %d copies", n)
	}
	for _, nd := range nodes {
		if n := countFiles(t, filepath.Join(nd.Config.DataDir, "sim", "fragments")); n != 3 {
			t.Fatalf("%s holds %d fragments", nd.Name, n)
		}
	}
	chunksBefore := countFiles(t, filepath.Join(holder, "chunks"))

	// Nothing to free while the copies live.
	var res agent.GCResult
	if err := client(t, nodes[1]).GC(ctx, 5*time.Second, &res); err != nil || res.Removed != 0 || res.Checkpoints != 3 {
		t.Fatalf("gc with every copy live: %+v %v", res, err)
	}
	dropped, err := r.Retain(ctx, "job", 1)
	if err != nil || len(dropped) != 2 {
		t.Fatalf("retain: %v %v", dropped, err)
	}
	waitSettled(t, nodes[0])
	if n := countFiles(t, filepath.Join(holder, "manifests")); n != 1 {
		t.Fatalf("partner holds %d copies after retention", n)
	}
	for _, nd := range nodes {
		if n := countFiles(t, filepath.Join(nd.Config.DataDir, "sim", "fragments")); n != 1 {
			t.Fatalf("%s holds %d fragments after retention", nd.Name, n)
		}
	}
	for _, m := range ms[:2] {
		for _, l := range levels.Order {
			if _, err := levels.LoadRecord(ctx, a, m.ID(), l); !errors.Is(err, backend.ErrNotExist) {
				t.Fatalf("record %s of a removed checkpoint: %v", l, err)
			}
		}
	}

	// gc waits for a writer holding the repository lock.
	h := client(t, nodes[1])
	unlock, err := h.Lock(ctx, repo.RepositoryLock, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.GC(ctx, 200*time.Millisecond, &res); !errors.Is(err, backend.ErrLocked) {
		t.Fatalf("gc beside a writer: %v", err)
	}
	unlock.Unlock()
	if err := h.GC(ctx, 5*time.Second, &res); err != nil || res.Removed == 0 || res.Checkpoints != 1 {
		t.Fatalf("gc: %+v %v", res, err)
	}
	if after := countFiles(t, filepath.Join(holder, "chunks")); after != chunksBefore-res.Removed || after < 5 {
		t.Fatalf("chunks %d → %d, removed %d", chunksBefore, after, res.Removed)
	}
	nodes[0].Wipe(t)
	nodes[0].Restart(t)
	rr, err := recoverOn(t, nodes[0], key, "job", "")
	if err != nil || rr.Level != levels.Partner || rr.Manifest.ID() != ms[2].ID() {
		t.Fatalf("recover after gc: %+v %v", rr, err)
	}
	if got := readGrid(t, client(t, nodes[0]), key, ms[2].ID()); !bytes.Equal(got, last) {
		t.Fatal("data differs after gc")
	}
}

// TestLevelKeep: the partner keeps copies of the newest checkpoint of
// each name only (partner.keep 1) while the origin keeps all three.
func TestLevelKeep(t *testing.T) {
	nodes := agenttest.Cluster(t, 2, map[string]string{"sim": tok}, agent.LevelsConfig{
		Partner: agent.PartnerConfig{Every: 1, Keep: 1},
	})
	a := client(t, nodes[0])
	var ms []*repo.Manifest
	for i := range 3 {
		_, m := write(t, a, nil, "job", randBytes(uint64(30+i), 100<<10))
		ms = append(ms, m)
		_, mo := write(t, a, nil, "other", randBytes(uint64(40+i), 10<<10))
		ms = append(ms, mo)
		waitIdle(t, nodes[0])
	}
	if n := countFiles(t, filepath.Join(nodes[1].Config.DataDir, "sim", "manifests")); n != 2 {
		t.Fatalf("partner holds %d copies, want the newest of each name", n)
	}
	for i, m := range ms {
		r := record(t, a, m.ID(), levels.Partner)
		if i < 4 && (!r.Dropped || r.Complete) || i >= 4 && !r.Complete {
			t.Fatalf("checkpoint %d: %+v", i, r)
		}
	}
}
