// Command tokens is a group of ranks that pass money to each other at
// random while the group takes global checkpoints (two-phase commit over
// Chandy-Lamport snapshots). Kill any rank or the coordinator at any
// moment, start the group again: it resumes from the last global
// checkpoint, and every rank ends with the balance of an uninterrupted run.
//
//	go run ./examples/tokens -serve 127.0.0.1:7070 -size 4 -repo /tmp/tok &   # the coordinator
//	for r in 0 1 2 3; do go run ./examples/tokens -coordinator 127.0.0.1:7070 -rank $r -size 4 -repo /tmp/tok & done
//
// The amounts are a pure function of (seed, rank, step), so the final
// balances are known in advance (-expect prints them).
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/repo"
)

type options struct {
	serve, coordinator, listen, group, repo string
	rank, size                              int
	steps, initial                          int64
	seed                                    uint64
	every, timeout, pace                    time.Duration
	keepAll, expect, debug, logged          bool
	ckptEvery                               int64
}

func main() {
	var o options
	flag.StringVar(&o.serve, "serve", "", "run the coordinator on this address (host:port; :0 prints the port)")
	flag.StringVar(&o.coordinator, "coordinator", "", "the coordinator's address (run a rank)")
	flag.StringVar(&o.listen, "listen", "", "rank: where peers connect (default 127.0.0.1:0)")
	flag.StringVar(&o.group, "group", "tokens", "group name")
	flag.StringVar(&o.repo, "repo", "", "checkpoint repository directory")
	flag.IntVar(&o.rank, "rank", 0, "this rank")
	flag.IntVar(&o.size, "size", 4, "ranks")
	flag.Int64Var(&o.steps, "steps", 2000, "transfers each rank makes")
	flag.Int64Var(&o.initial, "initial", 1000, "each rank's starting balance")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the transfers")
	flag.DurationVar(&o.every, "every", 50*time.Millisecond, "coordinator: global checkpoint interval")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "coordinator: round timeout")
	flag.DurationVar(&o.pace, "pace", 0, "rank: pause between transfers")
	flag.BoolVar(&o.keepAll, "keep-all", false, "rank: keep the checkpoints of every round")
	flag.BoolVar(&o.expect, "expect", false, "print the final balances of an uninterrupted run")
	flag.BoolVar(&o.debug, "debug", false, "debug logging")
	flag.BoolVar(&o.logged, "logged", false, "uncoordinated checkpoints with message logging: a rank that fails restarts alone")
	flag.Int64Var(&o.ckptEvery, "ckpt-every", 250, "logged rank: checkpoint every this many transfers")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "tokens:", err)
		if errors.Is(err, ckpt.ErrGroupLost) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	lvl := slog.LevelInfo
	if o.debug {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	switch {
	case o.expect:
		for r := range o.size {
			fmt.Printf("rank %d balance %d\n", r, Expected(o.seed, o.size, o.steps, o.initial)[r])
		}
		return nil
	case o.serve != "":
		return serve(ctx, o, log)
	case o.coordinator != "" && o.logged:
		return loggedRank(ctx, o, log)
	case o.coordinator != "":
		return rank(ctx, o, log)
	}
	return errors.New("give -serve, -coordinator or -expect")
}

// serve runs an embedded coordinator until every rank is done.
func serve(ctx context.Context, o options, log *slog.Logger) error {
	r, err := repo.OpenDir(ctx, o.repo, nil, true)
	if err != nil {
		return err
	}
	defer r.Close()
	srv, err := group.NewServer(ctx, group.ServerConfig{Group: o.group, Ranks: o.size, Repo: r, Every: o.every,
		Timeout: o.timeout, ExitWhenDone: true, Logger: log, Logged: o.logged})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.serve)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	return srv.Serve(ctx, ln)
}

// Transfer is rank r's step s: an amount of 1 to 10 to another rank.
func Transfer(seed uint64, size int, r int, s int64) (to int, amount int64) {
	x := seed*0x9e3779b97f4a7c15 ^ uint64(r)*0xbf58476d1ce4e5b9 ^ uint64(s)*0x94d049bb133111eb
	x ^= x >> 31
	x *= 0xd6e8feb86659fd39
	x ^= x >> 29
	to = int(x % uint64(size-1))
	if to >= r {
		to++
	}
	return to, int64(x>>40)%10 + 1
}

// Expected is every rank's balance at the end of an uninterrupted run.
func Expected(seed uint64, size int, steps, initial int64) []int64 {
	b := make([]int64, size)
	for r := range size {
		b[r] += initial
		for s := range steps {
			to, a := Transfer(seed, size, r, s)
			b[r] -= a
			b[to] += a
		}
	}
	return b
}

func incoming(seed uint64, size int, steps int64, r int) int64 {
	var n int64
	for p := range size {
		for s := range steps {
			if to, _ := Transfer(seed, size, p, s); p != r && to == r {
				n++
			}
		}
	}
	return n
}

func rank(ctx context.Context, o options, log *slog.Logger) error {
	job, err := ckpt.Open(fmt.Sprintf("%s.rank%d", o.group, o.rank), ckpt.WithDir(o.repo), ckpt.WithLogger(log))
	if err != nil {
		return err
	}
	defer job.Close()
	var balance, sent, received int64
	balance = o.initial
	job.Protect("balance", &balance)
	job.Protect("sent", &sent)
	job.Protect("received", &received)
	r, err := job.JoinGroup(ctx, ckpt.GroupConfig{Coordinator: o.coordinator, Group: o.group, Rank: o.rank, Size: o.size, KeepAll: o.keepAll, Listen: o.listen})
	if err != nil {
		return err
	}
	defer r.Close()
	expect := incoming(o.seed, o.size, o.steps, o.rank)
	take := func(data []byte) {
		balance += int64(binary.LittleEndian.Uint64(data))
		received++
	}
	for sent < o.steps || received < expect {
		if sent < o.steps {
			to, a := Transfer(o.seed, o.size, o.rank, sent)
			balance -= a
			sent++
			if err := r.Send(to, binary.LittleEndian.AppendUint64(nil, uint64(a))); err != nil {
				return err
			}
			if o.pace > 0 {
				time.Sleep(o.pace)
			}
		}
		for {
			_, data, ok, err := r.TryRecv()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			take(data)
		}
		if sent == o.steps && received < expect {
			_, data, err := r.Recv(ctx)
			if err != nil {
				return err
			}
			take(data)
		}
	}
	if err := r.Done(ctx); err != nil {
		return err
	}
	fmt.Printf("rank %d balance %d sent %d received %d restored %d\n", o.rank, balance, sent, received, r.Restored())
	return nil
}

// loggedRank is rank with uncoordinated checkpoints and message logging.
func loggedRank(ctx context.Context, o options, log *slog.Logger) error {
	job, err := ckpt.Open(fmt.Sprintf("%s.rank%d", o.group, o.rank), ckpt.WithDir(o.repo), ckpt.WithLogger(log))
	if err != nil {
		return err
	}
	defer job.Close()
	var balance, sent, received int64
	balance = o.initial
	job.Protect("balance", &balance)
	job.Protect("sent", &sent)
	job.Protect("received", &received)
	r, err := job.JoinLogged(ctx, ckpt.GroupConfig{Coordinator: o.coordinator, Group: o.group, Rank: o.rank, Size: o.size})
	if err != nil {
		return err
	}
	defer r.Close()
	expect := incoming(o.seed, o.size, o.steps, o.rank)
	take := func(data []byte) {
		balance += int64(binary.LittleEndian.Uint64(data))
		received++
	}
	for sent < o.steps || received < expect {
		if sent < o.steps {
			to, a := Transfer(o.seed, o.size, o.rank, sent)
			balance -= a
			sent++
			if err := r.Send(ctx, to, binary.LittleEndian.AppendUint64(nil, uint64(a))); err != nil {
				return err
			}
			if (sent+int64(o.rank)*37)%o.ckptEvery == 0 {
				if err := r.Checkpoint(ctx); err != nil {
					return err
				}
			}
			if o.pace > 0 {
				time.Sleep(o.pace)
			}
		}
		for {
			_, data, ok, err := r.TryRecv()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			take(data)
		}
		if sent == o.steps && received < expect {
			_, data, err := r.Recv(ctx)
			if err != nil {
				return err
			}
			take(data)
		}
	}
	if err := r.Done(ctx); err != nil {
		return err
	}
	fmt.Printf("rank %d balance %d sent %d received %d restarted %v\n", o.rank, balance, sent, received, r.Restarted())
	return nil
}
