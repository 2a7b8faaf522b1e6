//go:build !linux

package main

import (
	"context"

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
