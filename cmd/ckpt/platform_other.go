//go:build !linux

package main

import (
	"context"
	"log/slog"

	"github.com/ckpt/ckpt/internal/agent"

	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

func addPlatformCommands(root *cobra.Command, g *globalOptions) {}

func inspectKind(ctx context.Context, g *globalOptions, r *repo.Repository, m *repo.Manifest) error {
	return nil
}

func demoProcess(ctx context.Context, g *globalOptions, r *repo.Repository, name string) (bool, error) {
	return true, nil
}

func kindJSON(ctx context.Context, r *repo.Repository, m *repo.Manifest) (any, error) {
	return nil, nil
}

func migrationReceiver(g *globalOptions, node string, log *slog.Logger) agent.MigrationReceiver {
	return nil
}
