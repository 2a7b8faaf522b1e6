package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

// Exit statuses (../shared/CLI.md).
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitNotFound = 3
	exitDamaged  = 4
	exitUnknown  = 125 // run / foreground restore: ckpt itself failed
)

// exitError carries an exit status chosen by a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code, err}
}

// silentError is an exit status with nothing to say: the program's own.
type silentError struct{}

func (silentError) Error() string { return "" }

// usageError marks errors in how ckpt was called.
func usageError(format string, a ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, a...)}
}

// exitCode maps an error to the documented exit status.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, repo.ErrCorrupt):
		return exitDamaged
	case errors.Is(err, repo.ErrNotFound), errors.Is(err, repo.ErrNotRepository), errors.Is(err, backend.ErrNotExist):
		return exitNotFound
	}
	return exitFailed
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	repoDir string
	keyFile string
	stdout  io.Writer
	stderr  io.Writer
}

// openRepo opens the selected repository. create makes the default
// repository on first use (commands that write); others report that none
// exists.
func (g *globalOptions) openRepo(ctx context.Context, create bool) (*repo.Repository, error) {
	dir := g.repoDir
	if dir == "" {
		dir = repo.DefaultDir()
	}
	var key []byte
	kf := g.keyFile
	if kf == "" {
		kf = os.Getenv("CKPT_KEY_FILE")
	}
	if kf != "" {
		var err error
		if key, err = repo.ReadKeyFile(kf); err != nil {
			return nil, err
		}
	}
	return repo.OpenLocation(ctx, dir, key, create)
}

func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (g *globalOptions) warnf(format string, a ...any) {
	fmt.Fprintf(g.stderr, "ckpt: warning: "+format+"\n", a...)
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "ckpt",
		Short: "Checkpoint and restore long computations",
		Long: `ckpt saves a running computation so it can continue later from that point,
on this machine or another: unmodified Linux processes (dump, restore, run),
Go programs that use the ckpt library, and groups of them.

Every checkpoint goes into a repository: a directory (default
$XDG_DATA_HOME/ckpt, i.e. ~/.local/share/ckpt; --repo or CKPT_REPO to choose)
of deduplicated, compressed, checksummed and optionally encrypted chunks.

Checkpoint references: an ID or a unique prefix of at least 8 hex digits,
NAME (the newest checkpoint of that name that verifies), or NAME@SEQ.

Exit status: 0 success, 1 failure, 2 usage error, 3 not found,
4 damaged data.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.repoDir, "repo", os.Getenv("CKPT_REPO"), "repository: a directory or s3:http(s)://HOST/BUCKET/PREFIX (env CKPT_REPO; default ~/.local/share/ckpt)")
	root.PersistentFlags().StringVar(&g.keyFile, "key-file", "", "key of an encrypted repository (env CKPT_KEY_FILE)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%v (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(
		newInitCommand(g),
		newLsCommand(g),
		newInspectCommand(g),
		newVerifyCommand(g),
		newRmCommand(g),
		newGCCommand(g),
		newCpCommand(g),
		newAgentCommand(g), newFetchCommand(g),
		newDemoCommand(g),
		newDemoWorkerCommand(g),
		newPlanCommand(g),
		newSimCommand(g),
		newCoordinatorCommand(g), newRecoveryLineCommand(g),
	)
	addPlatformCommands(root, g)
	return root
}

// run executes the ckpt command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	if code == exitFailed && isCobraUsage(err) {
		code = exitUsage
	}
	var silent silentError
	if code != exitOK && !errors.As(err, &silent) {
		msg := err.Error()
		if errors.Is(err, syscall.ENOSPC) {
			msg = "no space left on device: what this command was writing was not committed (earlier checkpoints are intact); free space or use another repository\n" + msg
		}
		fmt.Fprintln(stderr, "ckpt: "+strings.ReplaceAll(msg, "\n", "\nckpt: "))
	}
	return code
}

// isCobraUsage recognises cobra's own argument errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.Contains(s, "arg(s)") || strings.HasPrefix(s, "unknown flag") || strings.HasPrefix(s, "required flag")
}

// exactArgs is cobra.ExactArgs with a usage exit status.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%s: expected %s (see '%s --help')", c.CommandPath(), what, c.CommandPath())
		}
		return nil
	}
}

func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError("%s: expected at most %s (see '%s --help')", c.CommandPath(), what, c.CommandPath())
		}
		return nil
	}
}
