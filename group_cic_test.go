package ckpt_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/group/recline"
	"github.com/ckpt/ckpt/internal/repo"
)

// cicGroup starts a coordinator in Logged mode (registry and barrier) and
// n CIC ranks over loopback TCP, each with one protected counter, and runs
// body on every rank in its own goroutine.
func cicGroup(t *testing.T, n int, body func(r *ckpt.CICRank, counter *int64) error) ([]*ckpt.CICRank, *repo.Repository) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	rp, err := repo.OpenDir(ctx, t.TempDir(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rp.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := group.NewServer(ctx, group.ServerConfig{Group: "cic", Ranks: n, Repo: rp, Logger: quiet, Logged: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, ln)
	ranks := make([]*ckpt.CICRank, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := func() error {
				job, err := ckpt.Open(fmt.Sprintf("cic.rank%d", i), ckpt.WithRepository(rp), ckpt.WithLogger(quiet))
				if err != nil {
					return err
				}
				defer job.Close()
				counter := new(int64)
				if err := job.Protect("counter", counter); err != nil {
					return err
				}
				r, err := job.JoinCIC(ctx, ckpt.GroupConfig{Coordinator: ln.Addr().String(), Group: "cic", Rank: i, Size: n, Trace: true})
				if err != nil {
					return err
				}
				ranks[i] = r
				if err := body(r, counter); err != nil {
					r.Close()
					return err
				}
				return r.Done(ctx)
			}()
			if err != nil {
				errs <- fmt.Errorf("rank %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return ranks, rp
}

// cicTrace merges the ranks' events into a recline trace (an order that
// puts every receive after its send) where every rank fails at the end: a
// whole-group restart. With basicOnly the forced checkpoints are left out:
// the same run with uncoordinated checkpoints only.
func cicTrace(t *testing.T, ranks []*ckpt.CICRank, basicOnly bool) (string, [][]uint64) {
	t.Helper()
	evs := make([][]ckpt.CICEvent, len(ranks))
	for i, r := range ranks {
		evs[i] = r.Events()
	}
	var b strings.Builder
	indexes, err := ckpt.WriteCICTrace(&b, evs, basicOnly)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ranks {
		fmt.Fprintf(&b, "r%d fail\n", i)
	}
	return b.String(), indexes
}

// proc is rank's number in tr (processes are numbered as they appear).
func proc(tr *recline.Trace, rank int) int {
	for p, n := range tr.Names {
		if n == fmt.Sprintf("r%d", rank) {
			return p
		}
	}
	panic(fmt.Sprintf("rank %d not in the trace", rank))
}

// lineOf is the recovery line as checkpoint numbers (0: the start), by
// rank.
func lineOf(t *testing.T, tr *recline.Trace, l recline.Line) []int {
	out := make([]int, len(l.Pos))
	for rank := range out {
		p := proc(tr, rank)
		pos := l.Pos[p]
		for _, e := range tr.Events[p][:pos] {
			if e.Kind == recline.Ckpt {
				out[rank]++
			}
		}
		if pos < len(tr.Events[p]) && pos > 0 && tr.Events[p][pos-1].Kind != recline.Ckpt {
			t.Fatalf("rank %d's place in the line is not a checkpoint", rank)
		}
	}
	return out
}

// TestCICDominoPattern runs the pattern that makes uncoordinated
// checkpoints roll back to the start: two ranks play ping-pong and each
// takes a basic checkpoint after every receive, before it answers. With
// the forced checkpoints of the index-based protocol the whole group
// restarts from the latest index line, computed by the recovery-line
// search (which knows nothing of indexes; messages in transit across the
// line are allowed, as the senders hold them) and by the indexes alike;
// with the basic checkpoints alone it rolls back to the first checkpoints.
func TestCICDominoPattern(t *testing.T) {
	const rounds = 6
	ranks, _ := cicGroup(t, 2, func(r *ckpt.CICRank, counter *int64) error {
		ctx := context.Background()
		if err := r.Checkpoint(ctx); err != nil {
			return err
		}
		if r.ID() == 0 {
			if err := r.Send(1, []byte{0}); err != nil {
				return err
			}
		}
		for {
			_, data, err := r.Recv(ctx)
			if err != nil {
				return err
			}
			*counter++
			if data[0] == 2*rounds {
				return nil
			}
			if err := r.Checkpoint(ctx); err != nil {
				return err
			}
			if err := r.Send(1-r.ID(), []byte{data[0] + 1}); err != nil {
				return err
			}
			if data[0]+1 == 2*rounds {
				return nil
			}
		}
	})
	for i, r := range ranks {
		basic, forced := r.Checkpoints()
		// One at the start and one after each of its six receives but
		// the last.
		if basic != rounds+1 {
			t.Errorf("rank %d: %d basic checkpoints, want %d", i, basic, rounds+1)
		}
		if forced == 0 {
			t.Errorf("rank %d: no forced checkpoint in a ping-pong with checkpoints between receive and send", i)
		}
	}
	withCIC, indexes := cicTrace(t, ranks, false)
	tr, err := recline.Parse(strings.NewReader(withCIC))
	if err != nil {
		t.Fatalf("%v\n%s", err, withCIC)
	}
	got := lineOf(t, tr, tr.RecoverInTransit())
	last := min(indexes[0][len(indexes[0])-1], indexes[1][len(indexes[1])-1])
	want := ckpt.CICLine(indexes, last)
	for p := range want {
		if want[p] < 0 || got[p] != want[p]+1 {
			t.Fatalf("recovery line %v (checkpoint numbers), the index line of %d is %v (positions)\n%s", got, last, want, withCIC)
		}
		if n := len(indexes[p]); got[p] < n-1 {
			t.Errorf("rank %d rolls back to checkpoint %d of %d: more than one interval", p, got[p], n)
		}
	}
	if o, _ := tr.Problems(tr.RecoverInTransit().Pos); len(o) > 0 {
		t.Fatalf("orphans on the index line: %v", o)
	}

	basicOnly, _ := cicTrace(t, ranks, true)
	tb, err := recline.Parse(strings.NewReader(basicOnly))
	if err != nil {
		t.Fatal(err)
	}
	// Both ranks took their first checkpoint before any message: the
	// domino effect stops there, every interval since is lost.
	if gotB := lineOf(t, tb, tb.RecoverInTransit()); gotB[0] != 1 || gotB[1] != 1 {
		t.Fatalf("basic checkpoints only: recovery line %v, want [1 1], the first checkpoints (the domino effect)\n%s", gotB, basicOnly)
	}
	t.Logf("index line %v of %d and %d checkpoints; without the forced ones: [1 1], the first", got, len(indexes[0]), len(indexes[1]))
}

// TestCICRandom: four ranks send at random and checkpoint on their own
// schedules (rank 3 never asks for one). Every index line is orphan-free
// and the recovery-line search finds a line no older than the last one; a rank's basic checkpoints
// are exactly those it asked for, and forced ones come only from
// receiving a higher index. Each checkpoint in the repository holds its
// index.
func TestCICRandom(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const n, steps = 4, 300
	asked := make([]int, n)
	ranks, rp := cicGroup(t, n, func(r *ckpt.CICRank, counter *int64) error {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, uint64(r.ID())))
		period := []int{7, 15, 40, 0}[r.ID()]
		ends := 0 // peers whose last message came
		for k := range steps {
			if period > 0 && rng.IntN(period) == 0 {
				if err := r.Checkpoint(ctx); err != nil {
					return err
				}
				asked[r.ID()]++
			}
			if rng.IntN(2) == 0 {
				to := rng.IntN(n - 1)
				if to >= r.ID() {
					to++
				}
				if err := r.Send(to, binary.LittleEndian.AppendUint64(nil, uint64(k))); err != nil {
					return err
				}
			}
			if err := drain(ctx, r, counter, &ends, false); err != nil {
				return err
			}
		}
		// An empty message to every peer ends the rank's sends; FIFO
		// links bring everything before it first.
		for p := range n {
			if p != r.ID() {
				if err := r.Send(p, nil); err != nil {
					return err
				}
			}
		}
		return drain(ctx, r, counter, &ends, true)
	})
	withCIC, indexes := cicTrace(t, ranks, false)
	tr, err := recline.Parse(strings.NewReader(withCIC))
	if err != nil {
		t.Fatalf("%v\n%s", err, withCIC)
	}
	totalForced := 0
	for i, r := range ranks {
		basic, forced := r.Checkpoints()
		totalForced += forced
		if basic != asked[i] {
			t.Errorf("rank %d: %d basic checkpoints, asked for %d", i, basic, asked[i])
		}
		// Indexes only grow, and a forced checkpoint takes the index
		// of the message delivered right after it.
		var ixs []uint64
		evs := r.Events()
		for k, e := range evs {
			if e.Kind != "ckpt" {
				continue
			}
			if len(ixs) > 0 && e.Index <= ixs[len(ixs)-1] {
				t.Errorf("rank %d: checkpoint index %d after %d", i, e.Index, ixs[len(ixs)-1])
			}
			if e.Forced && (k+1 == len(evs) || evs[k+1].Kind != "recv" || evs[k+1].Index != e.Index) {
				t.Errorf("rank %d: forced checkpoint of index %d not followed by the receive of a message of that index", i, e.Index)
			}
			ixs = append(ixs, e.Index)
		}
		if i == 3 && len(ixs) != forced {
			t.Errorf("rank 3 asked for no checkpoint and has %d, %d forced", len(ixs), forced)
		}
		ms, _, err := rp.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stored := 0
		for _, m := range ms {
			if m.Name == fmt.Sprintf("cic.rank%d", i) {
				stored++
			}
		}
		if stored != basic+forced {
			t.Errorf("rank %d: %d checkpoints stored, %d taken", i, stored, basic+forced)
		}
	}
	if totalForced == 0 {
		t.Fatalf("no forced checkpoint in %d random steps (seed %d)", steps, seed)
	}
	lastIx := uint64(1 << 62)
	for _, ix := range indexes {
		if len(ix) == 0 {
			t.Fatalf("a rank has no checkpoint (seed %d)", seed)
		}
		lastIx = min(lastIx, ix[len(ix)-1])
	}
	want := ckpt.CICLine(indexes, lastIx)
	got := lineOf(t, tr, tr.RecoverInTransit())
	// The search keeps a rank's later checkpoints when no orphan forbids
	// them: its line is never older than the index line.
	for p := range want {
		if got[p] < want[p]+1 {
			t.Fatalf("seed %d: recovery line %v (checkpoint numbers) older than the index line of %d %v (positions)", seed, got, lastIx, want)
		}
	}
	// The index line of every index is orphan-free, not only the last.
	for i := uint64(1); i <= lastIx; i++ {
		line := ckpt.CICLine(indexes, i)
		pos := make([]int, n)
		for rank := range n {
			pos[proc(tr, rank)] = ckptPos(tr, proc(tr, rank), line[rank]+1)
		}
		if o, _ := tr.Problems(pos); len(o) > 0 {
			t.Fatalf("seed %d: index line %d has orphans %v", seed, i, o)
		}
	}
	basicOnly, _ := cicTrace(t, ranks, true)
	tb, err := recline.Parse(strings.NewReader(basicOnly))
	if err != nil {
		t.Fatal(err)
	}
	gb := lineOf(t, tb, tb.RecoverInTransit())
	t.Logf("checkpoints per rank %v, forced %d; recovery line with CIC %v, basic checkpoints only %v", lens(indexes), totalForced, got, gb)
}

// drain receives what has arrived; with all, until every peer's empty
// last message (counted in ends).
func drain(ctx context.Context, r *ckpt.CICRank, counter *int64, ends *int, all bool) error {
	for !all || *ends < r.Size()-1 {
		var data []byte
		var ok bool
		var err error
		if all {
			_, data, err = r.Recv(ctx)
			ok = err == nil
		} else {
			_, data, ok, err = r.TryRecv(ctx)
		}
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if len(data) == 0 {
			*ends++
			continue
		}
		*counter++
	}
	return nil
}

func lens(x [][]uint64) []int {
	out := make([]int, len(x))
	for i := range x {
		out[i] = len(x[i])
	}
	return out
}

// ckptPos is the position in process p's events just after its k-th
// checkpoint (k from 1).
func ckptPos(tr *recline.Trace, p, k int) int {
	n := 0
	for i, e := range tr.Events[p] {
		if e.Kind == recline.Ckpt {
			n++
			if n == k {
				return i + 1
			}
		}
	}
	return -1
}
