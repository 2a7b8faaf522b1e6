package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/kcheck"
	"github.com/ckpt/ckpt/internal/procstore"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/supervise"
	"github.com/spf13/cobra"
)

// addPlatformCommands adds the process commands, which need Linux.
func addPlatformCommands(root *cobra.Command, g *globalOptions) {
	root.AddCommand(newDumpCommand(g), newRestoreCommand(g), newRunCommand(g), newPsCommand(g), newCheckCommand(g), newMigrateCommand(g))
}

// inspectKind prints the process view of a process checkpoint.
func inspectKind(ctx context.Context, g *globalOptions, r *repo.Repository, m *repo.Manifest) error {
	if m.Kind != repo.KindProcess {
		return nil
	}
	t, err := procstore.ReadTree(ctx, r, m)
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout)
	return image.WriteText(g.stdout, t)
}

// kindJSON is the kind-specific part of 'inspect --json': the process
// image of a process checkpoint.
func kindJSON(ctx context.Context, r *repo.Repository, m *repo.Manifest) (any, error) {
	if m.Kind != repo.KindProcess {
		return nil, nil
	}
	return procstore.ReadTree(ctx, r, m)
}

func jobStore(r *repo.Repository) (supervise.Store, error) {
	l, ok := r.Backend().(*backend.Local)
	if !ok {
		return supervise.Store{}, errors.New("jobs need a local repository")
	}
	return supervise.Store{Dir: filepath.Join(l.Root(), "jobs")}, nil
}

// superviseJob opens the repository and its job store for ckpt run (alone
// or as a group member) and runs the job with them. run's context is not
// cancelled by SIGINT/SIGTERM: the supervisor handles those itself (a
// checkpoint, then exit 143). The job's exit status becomes ckpt run's.
func superviseJob(ctx context.Context, g *globalOptions, run func(context.Context, *repo.Repository, supervise.Store) (int, error)) error {
	r, err := g.openRepo(ctx, true)
	if err != nil {
		return withCode(exitUnknown, err)
	}
	defer r.Close()
	store, err := jobStore(r)
	if err != nil {
		return withCode(exitUnknown, err)
	}
	code, err := run(context.WithoutCancel(ctx), r, store)
	if err != nil {
		return withCode(exitUnknown, err)
	}
	if code != 0 {
		return &exitError{code, silentError{}}
	}
	return nil
}

// A container's PID 1 starts as ckpt itself (internal/container.Init),
// before any command line parsing.
func init() {
	if len(os.Args) > 1 && os.Args[1] == container.InitArg {
		container.Init(os.Args[2:])
	}
}

func newRunCommand(g *globalOptions) *cobra.Command {
	var o supervise.Options
	var codec string
	var every string
	var pf runPolicyFlags
	var gf groupRunFlags
	c := &cobra.Command{
		Use:   "run [--name NAME] [--every DURATION|auto|young] [--mtbf D] [--deadline T] [--preempt-url URL] [--keep N] -- CMD [ARGS...]",
		Short: "Run a program under ckpt: periodic checkpoints, restart after crashes",
		Long: `Start CMD and look after it:

  - every --every (e.g. 10m), checkpoint it and let it continue;
  - with --every auto, at Daly's optimum interval from the measured checkpoint
    cost and the mean time between failures (--mtbf, else estimated from the
    job's recorded crashes per hour of runtime), re-derived after each
    checkpoint; --every young uses Young's √(2·cost·MTBF);
  - on SIGUSR1 to ckpt, checkpoint now and continue;
  - on --signal SIG, checkpoint and stop (SIG:continue: and continue);
  - before --deadline (or Slurm's SLURM_JOB_END_TIME), when the time left
    falls below the measured checkpoint cost plus --margin, checkpoint and
    stop (exit 143);
  - on a cloud preemption notice at --preempt-url, checkpoint and stop
    (exit 143);
  - on SIGTERM (a preemption notice, a walltime warning), checkpoint it, stop
    it and exit with 143; 'ckpt run --name NAME' again resumes it;
  - when it dies of a signal, restore the newest checkpoint and continue
    (up to --max-restarts, waiting --backoff, doubled each time); dying of
    SIGINT (^C) or SIGPIPE (its output reader went away) is not a crash:
    the job stops (exit 130 or 141) and 'ckpt run --name NAME' again
    resumes it;
  - when it exits by itself, mark the job done and exit with its status;
  - with --group G --coordinator ADDR, be one member of a group that the
    coordinator checkpoints as one (docs/GROUP.md).

Between checkpoints the program runs at full speed: no tracer, no wrappers.
After the first checkpoint the kernel tracks which pages the program writes
(userfaultfd write-protection, resolved by the kernel itself): each later
checkpoint reads only those, and the first write to a page after a
checkpoint costs the program ~1 µs once. Memory with transparent huge pages
is not tracked (it is read whole), so the program keeps its huge pages.
--no-track reads all memory at every checkpoint instead.

Without --name the run gets a fresh name and never resumes anything it did
not start itself. 'ckpt ps' lists jobs.`,
		Example: `  ckpt run --name sim --every 10m -- ./simulate input.dat
  kill -USR1 $(pgrep -x ckpt)     # checkpoint now
  ckpt run --name sim -- ./simulate input.dat   # resume after a stop`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("run: expected a command after -- (see 'ckpt run --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if err := pf.apply(&o, every); err != nil {
				return err
			}
			var err error
			if o.Codec, err = repo.ParseCodec(codec); err != nil {
				return usageError("--codec: %v", err)
			}
			o.Command = args
			o.Logf = func(format string, a ...any) { fmt.Fprintf(g.stderr, "ckpt: "+format+"\n", a...) }
			if (o.Hostname != "" || o.Veth != "") && !o.Isolate {
				return usageError("--hostname and --veth need --isolate")
			}
			if len(o.Hostname) > 64 || strings.ContainsAny(o.Hostname, "\x00/ ") {
				return usageError("--hostname %q: at most 64 bytes, no spaces, slashes or NUL", o.Hostname)
			}
			if gf.group != "" {
				if o.Isolate {
					return usageError("--group with --isolate is not supported yet: run each member without --isolate")
				}
				return runGroupMember(ctx, g, o, gf)
			}
			o.Resume = o.Name != ""
			if o.Name == "" {
				var b [4]byte
				rand.Read(b[:])
				o.Name = "run-" + hex.EncodeToString(b[:])
			}
			if err := repo.ValidName(o.Name); err != nil {
				return usageError("--name: %v", err)
			}
			if o.Veth != "" {
				// The interface names derive from the job name.
				if _, err := container.ParseVeth(o.Name, o.Veth); err != nil {
					return usageError("%v", err)
				}
			}
			return superviseJob(ctx, g, func(ctx context.Context, r *repo.Repository, store supervise.Store) (int, error) {
				if !o.Resume {
					fmt.Fprintf(g.stderr, "ckpt: job %s\n", o.Name)
				}
				return supervise.Run(ctx, r, store, o)
			})
		},
	}
	c.Flags().StringVar(&o.Name, "name", "", "job and checkpoint name; a later run with the same name resumes")
	c.Flags().StringVar(&every, "every", "auto", "checkpoint interval (e.g. 30s, 10m), auto (Daly's optimum from the measured cost and the MTBF: ~20 min before the first checkpoint, then tuned), or off")
	c.Flags().IntVar(&o.Keep, "keep", 3, "checkpoints of the job to keep (0: all)")
	c.Flags().StringVar(&codec, "codec", "auto", "chunk compression: auto (s2 where it pays), s2, zstd or none (fastest checkpoints, largest)")
	c.Flags().BoolVar(&o.Isolate, "isolate", false, "run CMD as a container: PID 1 of new PID, mount, UTS, IPC, network and time namespaces in a cgroup v2 group, checkpointed whole (docs/CONTAINERS.md)")
	c.Flags().StringVar(&o.Hostname, "hostname", "", "hostname inside an --isolate container (default: the job name)")
	c.Flags().StringVar(&o.Veth, "veth", "", "give an --isolate container a veth pair to the host: HOST_CIDR,CONTAINER_CIDR (e.g. 10.200.0.1/24,10.200.0.2/24); default: loopback only")
	c.Flags().BoolVar(&o.NoTrack, "no-track", false, "do not track the program's writes between checkpoints: each checkpoint reads (and hashes) all its memory")
	c.Flags().IntVar(&o.MaxRestarts, "max-restarts", 5, "crashes to recover from before giving up")
	c.Flags().DurationVar(&o.Backoff, "backoff", time.Second, "wait before the first restore after a crash (doubles each time)")
	pf.addFlags(c)
	gf.addFlags(c)
	return c
}

func newPsCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "ps",
		Short: "List jobs started with ckpt run",
		Long: `List the jobs of 'ckpt run' in this repository with their state (running,
stopped, done, failed, or lost when their supervisor died), PID, restarts
and last checkpoint.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.openRepo(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer r.Close()
			store, err := jobStore(r)
			if err != nil {
				return err
			}
			jobs, err := store.List()
			if err != nil {
				return err
			}
			if asJSON {
				if jobs == nil {
					jobs = []*supervise.Job{}
				}
				return g.printJSON(jobs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tPID\tRESTARTS\tCHECKPOINTS\tLAST CHECKPOINT\tCOMMAND")
			for _, j := range jobs {
				last, pid := "-", "-"
				if j.LastCheckpoint != "" {
					last = j.LastCheckpoint[:12] + " " + j.LastTime.Local().Format("15:04:05")
				}
				if j.PID != 0 {
					pid = fmt.Sprint(j.PID)
				}
				command := strings.Join(j.Command, " ")
				if j.Isolate {
					command = "[container] " + command
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", j.Name, j.State, pid, j.Restarts, j.Checkpoints, last, command)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "check",
		Short: "Say which kernel features ckpt can use here",
		Long: `Probe the kernel for what process checkpoint/restore needs (ptrace,
clone3 with set_tid, PR_SET_MM_MAP) and what makes it faster (userfaultfd
write-protect, PAGEMAP_SCAN, soft-dirty bits), and say why a feature is
missing. Exit status 1 when a required feature is missing.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := kcheck.Probe()
			if asJSON {
				if err := g.printJSON(fs); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				for _, f := range fs {
					st := "yes"
					if !f.OK {
						st = "no"
					}
					need := "optional"
					if f.Required {
						need = "required"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, st, need, f.Detail)
				}
				tw.Flush()
			}
			for _, f := range fs {
				if f.Required && !f.OK {
					return fmt.Errorf("%s is not available: process checkpoint/restore cannot work here", f.Name)
				}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}
