package ckpt_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/repo"
)

// startGroup starts a coordinator and n ranks (goroutines of this
// process, over loopback TCP), each protecting size bytes.
func startGroup(t testing.TB, n, size int, logged bool) (*group.Server, string, []*ckpt.Job, [][]byte, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	r, err := repo.OpenDir(ctx, dir, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := group.NewServer(ctx, group.ServerConfig{Group: "bench", Ranks: n, Repo: r, Logger: quiet, Logged: logged})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			t.Errorf("coordinator: %v", err)
		}
	}()
	jobs := make([]*ckpt.Job, n)
	data := make([][]byte, n)
	for i := range n {
		jobs[i], err = ckpt.Open(fmt.Sprintf("bench.rank%d", i), ckpt.WithRepository(r), ckpt.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		data[i] = make([]byte, size)
		jobs[i].Protect("step", new(int64))
		if size > 0 {
			jobs[i].Protect("data", data[i])
		}
	}
	return srv, ln.Addr().String(), jobs, data, func() {
		cancel()
		for _, j := range jobs {
			if err := j.Close(); err != nil {
				t.Errorf("closing %s: %v", j.Name(), err)
			}
		}
		if err := r.Close(); err != nil {
			t.Errorf("closing the repository: %v", err)
		}
	}
}

func fill(b []byte, seed uint64) {
	x := seed | 1
	for i := 0; i+8 <= len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i], b[i+1], b[i+2], b[i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		b[i+4], b[i+5], b[i+6], b[i+7] = byte(x>>32), byte(x>>40), byte(x>>48), byte(x>>56)
	}
}

// globalCheckpointLatency measures rounds of n ranks idle in Recv; with
// rewrite, every rank rewrites all its data before each round.
func globalCheckpointLatency(t *testing.T, n, size, rounds int, rewrite bool) []time.Duration {
	srv, addr, jobs, data, stop := startGroup(t, n, size, false)
	defer stop()
	ranks := make([]*ckpt.Rank, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := jobs[i].JoinGroup(context.Background(), ckpt.GroupConfig{Coordinator: addr, Group: "bench", Rank: i, Size: n})
			ranks[i] = r
			errs <- err
		}()
	}
	wg.Wait()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var out []time.Duration
	for k := range rounds {
		if rewrite {
			for i := range n {
				fill(data[i], uint64(k*n+i+1))
			}
		}
		ictx, cancel := context.WithCancel(context.Background())
		recvErr := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Recv serves the round and returns when cancelled: any
				// other outcome (a message, the group lost) is a failure.
				from, _, err := ranks[i].Recv(ictx)
				if err != context.Canceled {
					recvErr <- fmt.Errorf("rank %d: Recv returned (from %d) %v", i, from, err)
				}
			}()
		}
		t0 := time.Now()
		round, err := srv.Checkpoint(context.Background())
		out = append(out, time.Since(t0))
		cancel()
		wg.Wait()
		close(recvErr)
		for err := range recvErr {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if round != uint64(k+1) {
			t.Fatalf("round %d committed, want %d", round, k+1)
		}
	}
	for _, r := range ranks {
		r.Close()
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// TestGroupTiming prints the latency of global checkpoints for 2 to 16
// ranks and the messaging overhead (CKPT_BENCH_GROUP=1; numbers in
// docs/GROUP.md).
func TestGroupTiming(t *testing.T) {
	if os.Getenv("CKPT_BENCH_GROUP") == "" {
		t.Skip("set CKPT_BENCH_GROUP=1")
	}
	for _, n := range []int{2, 4, 8, 16} {
		if os.Getenv("CKPT_BENCH_GROUP") == "messages" {
			break
		}
		for _, c := range []struct {
			size    int
			rewrite bool
			name    string
		}{{0, false, "no data"}, {64 << 20, true, "64 MiB rewritten"}, {64 << 20, false, "64 MiB unchanged"}} {
			rounds := 15
			if c.size > 0 {
				rounds = 5
			}
			d := globalCheckpointLatency(t, n, c.size, rounds, c.rewrite)
			t.Logf("ranks %2d  %-17s median %8.2f ms  min %8.2f ms  max %8.2f ms", n, c.name,
				ms(d[len(d)/2]), ms(d[0]), ms(d[len(d)-1]))
		}
	}
	const msgs = 100000
	t.Logf("messages of 64 bytes, rank 0 to rank 1, %d: plain TCP %.0f/s, ranks %.0f/s, logged ranks %.0f/s",
		msgs, rate(t, msgs, "tcp"), rate(t, msgs, "rank"), rate(t, msgs, "logged"))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rate streams msgs messages from one endpoint to another.
func rate(t *testing.T, msgs int, kind string) float64 {
	payload := make([]byte, 64)
	switch kind {
	case "tcp":
		// The same framing over one TCP connection, without the rank
		// layers: the baseline of the ratio.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			for k := range msgs {
				f, err := group.ReadFrame(c)
				if err == nil && len(f.Data) != len(payload) {
					err = fmt.Errorf("message %d: %d bytes, want %d", k, len(f.Data), len(payload))
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true) // as the ranks' links
		}
		t0 := time.Now()
		for range msgs {
			if err := group.WriteFrame(c, group.Frame{Kind: group.FrameData, Data: payload}); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return float64(msgs) / time.Since(t0).Seconds()
	}
	_, addr, jobs, _, stop := startGroup(t, 2, 0, kind == "logged")
	defer stop()
	ctx := context.Background()
	type rk interface {
		recv(context.Context) error
		send(context.Context, int) error
	}
	ranks := make([]rk, 2)
	joinPair(t, ctx, jobs, addr, kind == "logged", func(i int, r *ckpt.Rank, lr *ckpt.LoggedRank) {
		if lr != nil {
			ranks[i] = loggedRk{lr, payload}
		} else {
			ranks[i] = plainRk{r, payload}
		}
	})
	// One message each way, both ranks at once, before timing: every
	// rank has served the other's first control messages (a fresh logged
	// rank delivers nothing until its peers answered its replay request,
	// and a logged rank that only sends never reads its links).
	werr := make(chan error, 2)
	for i := range 2 {
		go func() {
			err := ranks[i].send(ctx, 1-i)
			if err == nil {
				err = ranks[i].recv(ctx)
			}
			werr <- err
		}()
	}
	for range 2 {
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	done := make(chan error, 1)
	go func() {
		for k := range msgs {
			if err := ranks[1].recv(ctx); err != nil {
				err = fmt.Errorf("message %d: %w", k, err)
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range msgs {
		if err := ranks[0].send(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return float64(msgs) / time.Since(t0).Seconds()
}

// joinPair joins jobs[0] and jobs[1] as ranks 0 and 1 of a two-rank group,
// both at once (each waits for the other), with JoinLogged when logged,
// and hands each rank to got (lr set for a logged rank, r otherwise).
func joinPair(t testing.TB, ctx context.Context, jobs []*ckpt.Job, addr string, logged bool, got func(i int, r *ckpt.Rank, lr *ckpt.LoggedRank)) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := ckpt.GroupConfig{Coordinator: addr, Group: "bench", Rank: i, Size: 2}
			if logged {
				lr, err := jobs[i].JoinLogged(ctx, cfg)
				if err != nil {
					t.Error(err)
					return
				}
				got(i, nil, lr)
				return
			}
			r, err := jobs[i].JoinGroup(ctx, cfg)
			if err != nil {
				t.Error(err)
				return
			}
			got(i, r, nil)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

type plainRk struct {
	r *ckpt.Rank
	p []byte
}

func (x plainRk) recv(ctx context.Context) error {
	_, d, err := x.r.Recv(ctx)
	return checkLen(d, x.p, err)
}
func (x plainRk) send(_ context.Context, to int) error { return x.r.Send(to, x.p) }

type loggedRk struct {
	r *ckpt.LoggedRank
	p []byte
}

func (x loggedRk) recv(ctx context.Context) error {
	_, d, err := x.r.Recv(ctx)
	return checkLen(d, x.p, err)
}

func (x loggedRk) send(ctx context.Context, to int) error { return x.r.Send(ctx, to, x.p) }

func checkLen(got, want []byte, err error) error {
	if err == nil && len(got) != len(want) {
		err = fmt.Errorf("received %d bytes, sent %d", len(got), len(want))
	}
	return err
}
