package main

import (
	"github.com/spf13/cobra"
)

func newDemoCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "Show checkpoint/restart at work", RunE: func(cmd *cobra.Command, args []string) error { return nil }}
}

func newDemoWorkerCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{Use: "demo-worker", Hidden: true, RunE: func(cmd *cobra.Command, args []string) error { return nil }}
}
