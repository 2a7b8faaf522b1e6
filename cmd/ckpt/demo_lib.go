package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/heat"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

// The demo simulation: big enough to take a few seconds, small enough for
// any machine.
var demoHeat = heat.Config{N: 384, M: 384, Steps: 3000, Every: 250}

// demoLibrary runs the heat simulation in a child process (ckpt
// demo-worker), kills it with SIGKILL after a few checkpoints, runs it again
// to completion from its checkpoint, and compares the final grid's hash with
// an uninterrupted run's.
func demoLibrary(ctx context.Context, g *globalOptions, r *repo.Repository, name string) (bool, error) {
	// Start clean: the worker must not resume an older demo.
	if old, err := r.Resolve(ctx, name); err == nil {
		for _, m := range old {
			if err := r.Remove(ctx, m.ID()); err != nil {
				return false, err
			}
		}
	}
	dir := g.repoDir
	if dir == "" {
		dir = repo.DefaultDir()
	}
	exe, err := os.Executable()
	if err != nil {
		return false, err
	}
	worker := func() *exec.Cmd {
		args := []string{"--repo", dir}
		if g.keyFile != "" {
			args = append(args, "--key-file", g.keyFile)
		}
		return exec.CommandContext(ctx, exe, append(args, "demo-worker", "--name", name)...)
	}
	fmt.Fprintf(g.stdout, "library demo: heat diffusion %dx%d, %d steps, checkpoint every %d steps (ckpt Go library, async)\n",
		demoHeat.N, demoHeat.M, demoHeat.Steps, demoHeat.Every)

	// First run: killed after its third committed checkpoint.
	cmd := worker()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		return false, err
	}
	sc := bufio.NewScanner(out)
	commits, lastStep := 0, ""
	for sc.Scan() {
		if step, ok := strings.CutPrefix(sc.Text(), "committed step "); ok {
			commits, lastStep = commits+1, step
			if commits == 3 {
				cmd.Process.Signal(os.Kill)
				break
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		return false, fmt.Errorf("the first run was not killed as planned (%v)", err)
	}
	fmt.Fprintf(g.stdout, "library demo: killed the simulation with SIGKILL after the checkpoint of step %s\n", lastStep)

	// Second run: resumes and finishes.
	cmd = worker()
	cmd.Stderr = g.stderr
	res, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("the resumed run failed: %v", err)
	}
	var resumed int64
	var hashRestarted string
	for _, line := range strings.Split(string(res), "\n") {
		if rest, ok := strings.CutPrefix(line, "result "); ok {
			fmt.Sscanf(rest, "%s resumed %d", &hashRestarted, &resumed)
		}
	}
	if hashRestarted == "" {
		return false, fmt.Errorf("the resumed run printed no result: %q", res)
	}
	fmt.Fprintf(g.stdout, "library demo: restarted from the checkpoint at step %d and finished\n", resumed)

	// Reference: uninterrupted, no checkpoints.
	ref, err := heat.Run(ctx, nil, heat.Config{N: demoHeat.N, M: demoHeat.M, Steps: demoHeat.Steps})
	if err != nil {
		return false, err
	}
	ok := resumed > 0 && hashRestarted == ref.Hash
	verdict := "MATCH"
	if !ok {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(g.stdout, "library demo: final grid hash, killed and restarted: %s\n", hashRestarted)
	fmt.Fprintf(g.stdout, "library demo: final grid hash, uninterrupted:       %s\n", ref.Hash)
	fmt.Fprintf(g.stdout, "library demo: %s\n", verdict)
	return ok, nil
}

// newDemoWorkerCommand is the simulation process of the library demo. It
// prints "committed step N" after each commit and "result HASH resumed N"
// at the end.
func newDemoWorkerCommand(g *globalOptions) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:    "demo-worker",
		Hidden: true,
		Args:   exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx, true)
			if err != nil {
				return err
			}
			defer r.Close()
			// The commit hook runs in the background committer; it reports
			// the step each checkpoint holds, queued when the simulation
			// reached it (commits complete in order).
			cfg := demoHeat
			committed := make(chan int64, cfg.Steps/cfg.Every+1)
			cfg.Progress = func(s int64) {
				if s%cfg.Every == 0 {
					committed <- s
				}
			}
			// The demo says itself what happened; the library's own INFO
			// lines would interleave with it (warnings still show).
			quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			job, err := ckpt.Open(name, ckpt.WithRepository(r), ckpt.WithKeep(0), ckpt.WithLogger(quiet),
				ckpt.WithCommitHook(func(ckpt.CommitInfo) {
					select {
					case s := <-committed:
						fmt.Fprintf(g.stdout, "committed step %d\n", s)
					default:
					}
				}))
			if err != nil {
				return err
			}
			res, err := heat.Run(ctx, job, cfg)
			if cerr := job.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "result %s resumed %d\n", res.Hash, res.ResumedFrom)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "demo-heat", "checkpoint name")
	return c
}
