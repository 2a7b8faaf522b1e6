package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/supervise"
	"github.com/spf13/cobra"
)

// groupRunFlags are `ckpt run --group`'s flags: the run is one member of
// a group of unmodified processes checkpointed as one (docs/GROUP.md).
type groupRunFlags struct {
	group, coordinator, node string
	rank, ranks              int
}

func (f *groupRunFlags) addFlags(c *cobra.Command) {
	c.Flags().StringVar(&f.group, "group", "", "run as a member of this group: the coordinator (--coordinator) checkpoints every member at once (docs/GROUP.md)")
	c.Flags().StringVar(&f.coordinator, "coordinator", "", "with --group: the address `HOST:PORT` of 'ckpt coordinator'")
	c.Flags().IntVar(&f.rank, "rank", -1, "with --group: this member's rank (default: $CKPT_RANK, $SLURM_PROCID or $JOB_COMPLETION_INDEX)")
	c.Flags().IntVar(&f.ranks, "ranks", 0, "with --group: number of members (default: $CKPT_RANKS or $SLURM_NTASKS)")
	c.Flags().StringVar(&f.node, "node", "", "with --group: node name shown in the global checkpoint (default: host name)")
}

// fromEnv fills the rank and the number of ranks from the first variable
// that is set: srun sets SLURM_PROCID and SLURM_NTASKS, an Indexed Job of
// Kubernetes JOB_COMPLETION_INDEX.
func (f *groupRunFlags) fromEnv() error {
	pick := func(names ...string) (int, error) {
		for _, n := range names {
			if v := os.Getenv(n); v != "" {
				x, err := strconv.Atoi(v)
				if err != nil {
					return 0, fmt.Errorf("$%s=%q is not a number", n, v)
				}
				return x, nil
			}
		}
		return -1, nil
	}
	if f.rank < 0 {
		x, err := pick("CKPT_RANK", "SLURM_PROCID", "JOB_COMPLETION_INDEX")
		if err != nil {
			return usageError("--rank: %v", err)
		}
		f.rank = x
	}
	if f.ranks <= 0 {
		x, err := pick("CKPT_RANKS", "SLURM_NTASKS")
		if err != nil {
			return usageError("--ranks: %v", err)
		}
		f.ranks = x
	}
	if f.rank < 0 || f.ranks <= 0 || f.rank >= f.ranks {
		return usageError("--group %s: rank %d of %d ranks: give --rank and --ranks (or run under srun, or set CKPT_RANK and CKPT_RANKS)", f.group, f.rank, f.ranks)
	}
	return nil
}

// runGroupMember is `ckpt run --group`. The job is named GROUP.rankR
// unless --name says otherwise.
func runGroupMember(ctx context.Context, g *globalOptions, o supervise.Options, f groupRunFlags) error {
	if f.coordinator == "" {
		return usageError("--group needs --coordinator HOST:PORT")
	}
	if err := repo.ValidName(f.group); err != nil {
		return usageError("--group: %v", err)
	}
	if err := f.fromEnv(); err != nil {
		return err
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("%s.rank%d", f.group, f.rank)
	}
	if err := repo.ValidName(o.Name); err != nil {
		return usageError("--name: %v", err)
	}
	return superviseJob(ctx, g, func(ctx context.Context, r *repo.Repository, store supervise.Store) (int, error) {
		return supervise.RunGroup(ctx, r, store, o, supervise.GroupOptions{
			Coordinator: f.coordinator, Group: f.group, Rank: f.rank, Ranks: f.ranks, Node: f.node})
	})
}
