package main

import (
	"context"
	"fmt"

	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

func demoLibrary(ctx context.Context, g *globalOptions, r *repo.Repository, name string) (bool, error) {
	fmt.Fprintln(g.stdout, "library demo: pending")
	return true, nil
}

func newDemoWorkerCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{Use: "demo-worker", Hidden: true, RunE: func(cmd *cobra.Command, args []string) error { return nil }}
}
