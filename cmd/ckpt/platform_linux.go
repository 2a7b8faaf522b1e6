package main

import (
	"context"

	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

// addPlatformCommands adds the process commands (dump, restore, run, ps,
// check), which need Linux.
func addPlatformCommands(root *cobra.Command, g *globalOptions) {}

// inspectKind prints the kind-specific view of a checkpoint.
func inspectKind(ctx context.Context, g *globalOptions, r *repo.Repository, m *repo.Manifest) error {
	return nil
}
