package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/progress"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// procExitCode maps process-level errors to exit statuses.
func procExitCode(err error) error {
	if errors.Is(err, dump.ErrNotFound) {
		return withCode(exitNotFound, err)
	}
	return err
}

func newDumpCommand(g *globalOptions) *cobra.Command {
	var o proccr.DumpOptions
	var stream, noAck bool
	var codec string
	var ackTimeout, stallTimeout time.Duration
	c := &cobra.Command{
		Use:   "dump PID",
		Short: "Checkpoint a running process tree",
		Long: `Checkpoint the process tree rooted at PID (every process and thread) into
the repository and print the checkpoint's ID. The tree is frozen while it is
saved; once the checkpoint is committed it is killed, or resumed with
--leave-running. If anything fails, the tree is resumed untouched.

The checkpoint is named --name (default: the process's command name); a dump
stores only the memory pages that changed since the newest checkpoint of that
name. Restore it with 'ckpt restore ID' or 'ckpt restore NAME'.

Supported (docs/PROCESS.md): threads, child processes, sessions; pipes,
FIFOs, regular files and devices; Unix sockets, TCP (established connections
too, with TCP_REPAIR) and UDP; epoll, eventfd, signalfd, timerfd, inotify;
shared memory (anonymous, memfd, System V, POSIX), System V semaphores and
message queues, file locks; POSIX timers, scheduling, credentials, seccomp;
terminals. Anything else is refused with a message naming the process, fd
and kind, and the tree is resumed.

Chunks are compressed with s2 where it pays (--codec auto); --codec none
makes the dump faster where the CPU, not the disk, is the limit.`,
		Example: `  ckpt dump 4242
  ckpt dump --name sim --leave-running 4242
  ckpt dump --codec none 4242     # fastest, largest image`,
		Args: exactArgs(1, "one PID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			pid, err := strconv.Atoi(args[0])
			if err != nil || pid <= 0 {
				return usageError("dump: %q is not a PID", args[0])
			}
			if stream {
				return dumpStream(ctx, g, pid, o.NoPreCopy, noAck, ackTimeout, stallTimeout)
			}
			if o.Codec, err = repo.ParseCodec(codec); err != nil {
				return usageError("--codec: %v", err)
			}
			r, err := g.openRepo(ctx, true)
			if err != nil {
				return err
			}
			defer r.Close()
			bar := progress.New(stderrFile(g), "dumping", 0)
			o.Progress = bar.Add
			res, err := proccr.Dump(ctx, r, pid, o)
			bar.Done()
			if err != nil && res == nil {
				return procExitCode(err)
			}
			fmt.Fprintln(g.stdout, res.Manifest.ID())
			for _, w := range res.Tree.Warnings {
				g.warnf("%s", w)
			}
			st := res.Stats
			pre := ""
			if res.PreCopied > 0 {
				pre = fmt.Sprintf(", %s pre-copied while running", progress.Bytes(int64(res.PreCopied)))
			}
			fmt.Fprintf(g.stderr, "dumped %d process(es) as %s: %s of memory, %s new (%s stored), frozen %.1f ms%s\n",
				len(res.Tree.Processes), res.Manifest.Ref(), progress.Bytes(st.Bytes), progress.Bytes(st.NewBytes), progress.Bytes(st.StoredBytes),
				float64(res.Frozen.Microseconds())/1000, pre)
			return err
		},
	}
	c.Flags().StringVar(&o.Name, "name", "", "checkpoint name (default: the process's command name)")
	c.Flags().BoolVar(&o.LeaveRunning, "leave-running", false, "let the tree run on after the dump instead of killing it")
	c.Flags().BoolVar(&o.Full, "full", false, "store every page, not only those changed since the previous checkpoint")
	c.Flags().BoolVar(&o.NoPreCopy, "no-pre-copy", false, "with --leave-running or --stream: do not copy memory while the tree runs first")
	c.Flags().StringVar(&codec, "codec", "auto", "chunk compression: auto (s2 where it pays), s2, zstd (smaller, slower) or none (fastest dump, largest image)")
	c.Flags().BoolVar(&stream, "stream", false, "write a migration stream to stdout instead of a checkpoint (docs/MIGRATE.md); the process is killed once 'ckpt restore --stream' confirms on stdin")
	c.Flags().BoolVar(&noAck, "no-ack", false, "with --stream: wait for no confirmation and leave the process running (a copy, not a move)")
	c.Flags().DurationVar(&ackTimeout, "ack-timeout", 2*time.Minute, "with --stream: how long to wait, frozen, for the confirmation")
	c.Flags().DurationVar(&stallTimeout, "stall-timeout", 30*time.Second, "with --stream: give up (and resume the process) when stdout takes nothing for this long")
	return c
}

// restoreNewest restores ref; for a bare NAME it falls back to older
// checkpoints when the newest is damaged.
func restoreNewest(ctx context.Context, g *globalOptions, r *repo.Repository, ref string, opts restore.Options) (*restore.Result, *repo.Manifest, error) {
	ms, err := r.Resolve(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	var firstErr error
	for _, m := range ms {
		bar := progress.New(stderrFile(g), "restoring", int64(m.StoredBytes()))
		res, err := proccr.Restore(ctx, r, m, opts, bar.Add)
		bar.Done()
		if err == nil {
			return res, m, nil
		}
		if !errors.Is(err, repo.ErrCorrupt) || len(ms) == 1 {
			return nil, nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
		g.warnf("skipping %s (%s): %v", m.Ref(), m.ID()[:12], firstLine(err))
	}
	return nil, nil, fmt.Errorf("no checkpoint of %q could be restored: %w", ref, firstErr)
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var detach, stream, newTTY bool
	var inherit []string
	var stdio [3]string
	c := &cobra.Command{
		Use:   "restore ID|NAME",
		Short: "Restore a checkpointed process tree",
		Long: `Rebuild the process tree of a checkpoint with its original PIDs and let it
continue. The program is not re-executed: its memory, registers, files,
pipes and signal state are put back as they were.

By default restore stays in the foreground as the parent of the restored
root, forwards signals to it and exits with its status (128+N if it died of
signal N). With --detach it prints the root's PID and returns.

Stdio that led outside the tree (a terminal, a pipe from a shell) is replaced
by restore's own stdin, stdout and stderr. Other fds that led outside are
given as --inherit-fd PATH=FD (PATH as 'ckpt inspect' shows it, FD an open fd
of restore); the rest get /dev/null and a warning.

With --new-tty, fds that were on a terminal go on a new pseudo-terminal
with the saved settings and window size instead, and a session leader
that had the terminal as its controlling terminal gets it back with its
foreground process group; restore relays its own stdin and stdout to that
terminal (raw mode and window size changes when they are a terminal)
until the program exits. Without it, a session's controlling terminal is
only restored when the substitute is a terminal no other session controls.

With --detach the restored program keeps restore's stdout: in a command
substitution, $(ckpt restore --detach ...) would wait for the program to
close it; give --stdout FILE (or redirect restore's stdout to a file).

A PID still taken by a dying process is waited for briefly; one taken by a
live process is an error that names it. Mapped files that changed since the
dump are refused.`,
		Example: `  ckpt restore sim
  ckpt restore --detach 3fa9c2d1
  ckpt restore --new-tty shell
  ckpt restore --inherit-fd 'pipe:[81234]=3' sim 3</some/fifo`,
		Args: func(c *cobra.Command, args []string) error {
			if stream {
				return exactArgs(0, "no checkpoint reference with --stream (the stream comes on stdin)")(c, args)
			}
			return exactArgs(1, "one checkpoint reference")(c, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if newTTY && detach {
				return usageError("--new-tty needs a foreground restore (it relays the new terminal); leave out --detach")
			}
			opts := restore.Options{Detach: detach, NewTTY: newTTY, InheritFDs: map[string]*os.File{}}
			for i, p := range stdio {
				if p == "" {
					continue
				}
				flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
				if i == 0 {
					flag = os.O_RDONLY
				}
				f, err := os.OpenFile(p, flag, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				switch i {
				case 0:
					opts.Stdin = f
				case 1:
					opts.Stdout = f
				case 2:
					opts.Stderr = f
				}
			}
			for _, spec := range inherit {
				path, fdStr, ok := strings.Cut(spec, "=")
				fd, err := strconv.Atoi(fdStr)
				if !ok || err != nil || fd < 0 {
					return usageError("--inherit-fd %q: want PATH=FD", spec)
				}
				opts.InheritFDs[path] = os.NewFile(uintptr(fd), path)
			}
			// Forward signals from the moment the tree exists.
			sigs := make(chan os.Signal, 8)
			if !detach {
				signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
				defer signal.Stop(sigs)
			}
			var res *restore.Result
			ref := "the stream"
			var err error
			if stream {
				res, err = restoreStream(context.WithoutCancel(ctx), g, opts)
			} else {
				r, oerr := g.openRepo(ctx, false)
				if oerr != nil {
					return oerr
				}
				defer r.Close()
				var m *repo.Manifest
				res, m, err = restoreNewest(context.WithoutCancel(ctx), g, r, args[0], opts)
				if m != nil {
					ref = m.Ref()
				}
			}
			if err != nil {
				if !detach {
					return withCode(exitFailedRestore(err), err)
				}
				return err
			}
			for _, w := range res.Warnings {
				g.warnf("%s", w)
			}
			if detach {
				if !stream { // restoreStream printed it
					fmt.Fprintln(g.stdout, res.Root)
				}
				return nil
			}
			fmt.Fprintf(g.stderr, "restored %s: %d process(es), root PID %d\n", ref, len(res.PIDs), res.Root)
			finishTTY := func() {}
			if newTTY {
				if res.TTY == nil {
					g.warnf("--new-tty: the checkpoint had no fd on a terminal")
				} else {
					finishTTY = relayTTY(res.TTY, os.Stdin, g.stdout)
				}
			}
			done := make(chan struct{})
			go func() {
				for {
					select {
					case s := <-sigs:
						res.Signal(s.(syscall.Signal))
					case <-done:
						return
					}
				}
			}()
			ws, err := res.Wait()
			close(done)
			finishTTY()
			if err != nil {
				return withCode(exitUnknown, fmt.Errorf("waiting for the restored process %d: %w", res.Root, err))
			}
			return programStatus(ws)
		},
	}
	c.Flags().BoolVar(&detach, "detach", false, "print the restored root's PID and return instead of waiting for it")
	c.Flags().BoolVar(&stream, "stream", false, "restore from a migration stream on stdin ('ckpt dump --stream'); print the root PID on stdout once restored")
	c.Flags().StringArrayVar(&inherit, "inherit-fd", nil, "give an outside fd to the tree: PATH=FD (repeatable)")
	c.Flags().BoolVar(&newTTY, "new-tty", false, "put fds that were on a terminal on a new pseudo-terminal (controlling terminal and foreground group restored) and relay it to restore's stdin/stdout")
	c.Flags().StringVar(&stdio[0], "stdin", "", "file for stdin that led outside the tree (default: restore's own)")
	c.Flags().StringVar(&stdio[1], "stdout", "", "file (appended) for stdout that led outside the tree (default: restore's own)")
	c.Flags().StringVar(&stdio[2], "stderr", "", "file (appended) for stderr that led outside the tree (default: restore's own)")
	return c
}

// exitFailedRestore: a foreground restore that failed before the program
// ran reports ckpt's own failure with the usual statuses.
func exitFailedRestore(err error) int {
	if c := exitCode(err); c != exitFailed {
		return c
	}
	return exitFailed
}

// programStatus turns the program's wait status into ckpt's exit status.
func programStatus(ws unix.WaitStatus) error {
	switch {
	case ws.Exited():
		if ws.ExitStatus() == 0 {
			return nil
		}
		return &exitError{ws.ExitStatus(), silentError{}}
	case ws.Signaled():
		return &exitError{128 + int(ws.Signal()), silentError{}}
	}
	return &exitError{exitUnknown, fmt.Errorf("unexpected wait status %#x", uint32(ws))}
}
