package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/spf13/cobra"
)

type coordinatorOptions struct {
	group        string
	ranks        int
	listen       string
	every        time.Duration
	timeout      time.Duration
	exitWhenDone bool
	verbose      bool
}

func newCoordinatorCommand(g *globalOptions) *cobra.Command {
	var o coordinatorOptions
	c := &cobra.Command{
		Use:   "coordinator --group NAME --ranks N",
		Short: "Coordinate the global checkpoints of a group of ranks",
		Long: `Run the coordinator of a group of N ranks: programs that use the ckpt
library's JoinGroup, or unmodified programs each under 'ckpt run --group
NAME --coordinator ADDR' (their trees are dumped while they keep running,
and restored together from the newest global checkpoint when the members
are launched again). Ranks register over TCP; a global checkpoint is a
two-phase commit: every rank records its state and the messages in flight
to it (a Chandy-Lamport snapshot, taken without stopping the ranks) and
writes its own checkpoint; then the coordinator writes the global
checkpoint NAME@SEQ (kind group) into the repository: the commit point. A
rank that fails or times out aborts the round; the previous global
checkpoint stays the recovery line. Started again after a crash, the
coordinator takes the newest global checkpoint as the recovery line and
ranks that register are restored from it.

Prints "listening ADDR" on stdout once it accepts ranks. SIGUSR1 takes a
global checkpoint now. docs/GROUP.md has the protocols.`,
		Example: `  ckpt --repo /shared/ckpt coordinator --group sim --ranks 16 --listen :7070 --every 10m`,
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCoordinator(cmd.Context(), g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.group, "group", "", "the group's name (required)")
	f.IntVar(&o.ranks, "ranks", 0, "number of ranks (required)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to accept ranks on")
	f.DurationVar(&o.every, "every", 0, "take a global checkpoint this often (0: when a rank or SIGUSR1 asks)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "abort a round whose ranks have not all prepared in this time")
	f.BoolVar(&o.exitWhenDone, "exit-when-done", false, "exit once every rank has said it is done")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log every round")
	return c
}

func runCoordinator(ctx context.Context, g *globalOptions, o coordinatorOptions) error {
	if o.group == "" || o.ranks <= 0 {
		return usageError("coordinator: --group and --ranks are required")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	lvl := slog.LevelInfo
	if o.verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
	r, err := g.openRepo(ctx, true)
	if err != nil {
		return err
	}
	defer r.Close()
	srv, err := group.NewServer(ctx, group.ServerConfig{Group: o.group, Ranks: o.ranks, Repo: r, Every: o.every,
		Timeout: o.timeout, ExitWhenDone: o.exitWhenDone, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "listening %s\n", ln.Addr())
	if f, ok := g.stdout.(*os.File); ok {
		f.Sync()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-usr1:
				go func() {
					if round, err := srv.Checkpoint(ctx); err != nil {
						log.Warn("global checkpoint on SIGUSR1", "err", err)
					} else {
						log.Info("global checkpoint on SIGUSR1", "round", round)
					}
				}()
			case <-ctx.Done():
				return
			}
		}
	}()
	return srv.Serve(ctx, ln)
}
