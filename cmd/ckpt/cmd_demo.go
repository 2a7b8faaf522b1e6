package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newDemoCommand(g *globalOptions) *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Show checkpoint/restart at work on this machine",
		Long: `Run ckpt's two kinds of checkpointing end to end, in the repository
(default ~/.local/share/ckpt, created if needed):

 1. transparent: python3 computes a sequence; ckpt dumps it mid-way, kills
    it, restores it with the same PID and checks that the output equals an
    uninterrupted run (no step lost, repeated or re-executed);
 2. library: a 2-D heat simulation that uses the ckpt Go library is killed
    with SIGKILL mid-way, restarted from its checkpoint, and its final grid
    hash compared with an uninterrupted run's.

Exit status 0 when both match, 1 otherwise.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx, true)
			if err != nil {
				return err
			}
			defer r.Close()
			okProc, err := demoProcess(ctx, g, r, "demo-python")
			if err != nil {
				return fmt.Errorf("process demo: %w", err)
			}
			okLib, err := demoLibrary(ctx, g, r, "demo-heat")
			if err != nil {
				return fmt.Errorf("library demo: %w", err)
			}
			if !keep {
				for _, n := range []string{"demo-python", "demo-heat"} {
					r.Retain(ctx, n, 1)
				}
			}
			if !okProc || !okLib {
				return errors.New("demo: results differ")
			}
			fmt.Fprintln(g.stdout, "demo: all results match")
			return nil
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep every demo checkpoint (default: only the newest of each)")
	return c
}
