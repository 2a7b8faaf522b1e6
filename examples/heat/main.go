// Command heat runs a 2-D heat diffusion simulation that checkpoints
// itself with the ckpt library. Kill it at any moment (kill -9 included)
// and run it again with the same flags: it resumes from its newest
// checkpoint, and the hash it prints at the end is bit-identical to that of
// an uninterrupted run.
//
//	go run ./examples/heat -repo /tmp/heat-repo -size 512 -steps 20000 -every 500
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/heat"
)

type options struct {
	repo        string
	name        string
	size, cols  int
	steps       int64
	every       int64
	sync, check bool
}

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", "", "checkpoint repository directory (default: the ckpt default repository)")
	flag.StringVar(&o.name, "name", "heat", "checkpoint name")
	flag.IntVar(&o.size, "size", 256, "grid rows (and columns, unless -cols)")
	flag.IntVar(&o.cols, "cols", 0, "grid columns (default: -size)")
	flag.Int64Var(&o.steps, "steps", 10000, "steps to run")
	flag.Int64Var(&o.every, "every", 500, "checkpoint every this many steps (0: never)")
	flag.BoolVar(&o.sync, "sync", false, "commit each checkpoint before continuing (default: in the background)")
	flag.BoolVar(&o.check, "check", false, "also run without checkpoints and compare the hashes")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "heat:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.cols == 0 {
		o.cols = o.size
	}
	opts := []ckpt.Option{ckpt.WithAsync(!o.sync), ckpt.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))}
	if o.repo != "" {
		opts = append(opts, ckpt.WithDir(o.repo))
	}
	job, err := ckpt.Open(o.name, opts...)
	if err != nil {
		return err
	}
	start := time.Now()
	cfg := heat.Config{N: o.size, M: o.cols, Steps: o.steps, Every: o.every}
	res, err := heat.Run(ctx, job, cfg)
	if cerr := job.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted; run again to resume from the last checkpoint")
	}
	if err != nil {
		return err
	}
	for _, s := range res.Restore.Skipped {
		fmt.Printf("skipped damaged checkpoint %d: %v\n", s.Seq, s.Err)
	}
	fmt.Printf("grid %dx%d, %d steps, resumed from step %d, %d checkpoints, %.2fs\n",
		o.size, o.cols, res.Steps, res.ResumedFrom, res.Checkpoints, time.Since(start).Seconds())
	fmt.Printf("hash %s\n", res.Hash)
	if o.check {
		ref, err := heat.Run(ctx, nil, cfg)
		if err != nil {
			return err
		}
		if ref.Hash != res.Hash {
			return fmt.Errorf("an uninterrupted run gives %s: the results differ", ref.Hash)
		}
		fmt.Println("identical to an uninterrupted run")
	}
	return nil
}
