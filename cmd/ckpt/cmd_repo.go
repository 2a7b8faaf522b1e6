package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ckpt/ckpt/internal/agent"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/progress"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

func newInitCommand(g *globalOptions) *cobra.Command {
	var chunkSize int
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a repository",
		Long: `Create a checkpoint repository in --repo (default ~/.local/share/ckpt).

Commands that write create the default unencrypted repository on first use,
so init is needed only for an encrypted repository or another chunk size.
With --key-file, chunks and manifests are sealed with XChaCha20-Poly1305 and
chunk addresses are keyed hashes; every later command needs the same key.
Generate a key with: head -c 32 /dev/urandom > key`,
		Example: `  ckpt init --repo /scratch/ckpt
  head -c 32 /dev/urandom > ~/.ckpt.key && ckpt init --key-file ~/.ckpt.key`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := g.repoDir
			if dir == "" {
				dir = repo.DefaultDir()
			}
			opts := repo.InitOptions{ChunkSize: chunkSize}
			kf := g.keyFile
			if kf == "" {
				kf = os.Getenv("CKPT_KEY_FILE")
			}
			if kf != "" {
				k, err := repo.ReadKeyFile(kf)
				if err != nil {
					return err
				}
				opts.Key = k
			}
			r, err := repo.InitLocation(cmd.Context(), dir, opts)
			if err != nil {
				return err
			}
			defer r.Close()
			enc := "unencrypted"
			if r.Encrypted() {
				enc = "encrypted"
			}
			fmt.Fprintf(g.stderr, "created %s repository %s in %s\n", enc, r.Config().ID, dir)
			return nil
		},
	}
	c.Flags().IntVar(&chunkSize, "chunk-size", 0, "chunk size in bytes, a multiple of 4096 (default 1 MiB)")
	return c
}

// checkpointJSON is the --json form of a checkpoint (docs/CLI.md).
type checkpointJSON struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Seq         uint64            `json:"seq"`
	Kind        string            `json:"kind"`
	Time        time.Time         `json:"time"`
	Parent      string            `json:"parent,omitempty"`
	Host        string            `json:"host,omitempty"`
	Objects     int               `json:"objects"`
	Size        uint64            `json:"size"`
	ChunkBytes  uint64            `json:"chunk_bytes"`
	Meta        map[string]string `json:"meta,omitempty"`
	Damaged     string            `json:"damaged,omitempty"`
	Unreachable bool              `json:"-"`
}

func toJSON(m *repo.Manifest) checkpointJSON {
	var size uint64
	for _, o := range m.Objects {
		for _, e := range o.Extents {
			size += e.Len
		}
	}
	return checkpointJSON{ID: m.ID(), Name: m.Name, Seq: m.Seq, Kind: m.Kind, Time: m.Time, Parent: m.Parent,
		Host: m.Host, Objects: len(m.Objects), Size: size, ChunkBytes: m.StoredBytes(), Meta: m.Meta}
}

func newLsCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List checkpoints",
		Long: `List the checkpoints in the repository, newest first, or those of NAME.
SIZE is the data the checkpoint holds; CHUNKS the plain bytes of the chunks
it references (shared with other checkpoints where unchanged).
Unreadable manifests are listed as damaged (and make the exit status 4).`,
		Args: maxArgs(1, "one NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx, false)
			if err != nil {
				return err
			}
			defer r.Close()
			ms, bad, err := r.List(ctx)
			if err != nil {
				return err
			}
			out := []checkpointJSON{}
			for _, m := range ms {
				if len(args) == 0 || m.Name == args[0] {
					out = append(out, toJSON(m))
				}
			}
			if len(args) == 0 {
				for _, b := range bad {
					out = append(out, checkpointJSON{ID: b.ID, Damaged: b.Err.Error()})
				}
			}
			if asJSON {
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tKIND\tTIME\tSIZE\tCHUNKS")
				for _, c := range out {
					if c.Damaged != "" {
						fmt.Fprintf(tw, "%s\t-\tDAMAGED\t-\t-\t%s\n", c.ID[:12], c.Damaged)
						continue
					}
					fmt.Fprintf(tw, "%s\t%s@%d\t%s\t%s\t%s\t%s\n", c.ID[:12], c.Name, c.Seq, c.Kind,
						c.Time.Local().Format("2006-01-02 15:04:05"), progress.Bytes(int64(c.Size)), progress.Bytes(int64(c.ChunkBytes)))
				}
				tw.Flush()
			}
			if len(args) == 1 && len(out) == 0 {
				return withCode(exitNotFound, fmt.Errorf("no checkpoints named %q", args[0]))
			}
			if len(bad) > 0 && len(args) == 0 {
				return withCode(exitDamaged, fmt.Errorf("%d manifest(s) cannot be read; 'ckpt verify' says more", len(bad)))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

// resolve finds one checkpoint. For a bare NAME it is the newest that
// verifies (when verify is set), warning about each newer one skipped.
func (g *globalOptions) resolve(ctx context.Context, r *repo.Repository, ref string, verify bool) (*repo.Manifest, error) {
	ms, err := r.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(ms) == 1 || !verify {
		return ms[0], nil
	}
	var firstErr error
	for _, m := range ms {
		err := r.Verify(ctx, m, nil)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, repo.ErrCorrupt) {
			return nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
		g.warnf("skipping %s (%s): %v", m.Ref(), m.ID()[:12], firstLine(err))
	}
	return nil, fmt.Errorf("no checkpoint of %q verifies: %w", ref, firstErr)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func newVerifyCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "verify [ID|NAME]",
		Short: "Re-hash every chunk of a checkpoint, or of all",
		Long: `Read every chunk of the checkpoint (or of every checkpoint), check it
against its address and decode it. Damage is reported with the checkpoint,
object and chunk, and the exit status is 4.`,
		Args: maxArgs(1, "one checkpoint reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx, false)
			if err != nil {
				return err
			}
			defer r.Close()
			var ms []*repo.Manifest
			var damaged []error
			if len(args) == 1 {
				all, err := r.Resolve(ctx, args[0])
				if err != nil {
					return err
				}
				ms = all[:1]
				if !strings.Contains(args[0], "@") {
					ms = all // NAME: check all of that name, report each
				}
			} else {
				var bad []repo.BadManifest
				if ms, bad, err = r.List(ctx); err != nil {
					return err
				}
				for _, b := range bad {
					damaged = append(damaged, b.Err)
					fmt.Fprintf(g.stdout, "%s  DAMAGED  %v\n", b.ID[:12], b.Err)
				}
			}
			var total int64
			for _, m := range ms {
				total += int64(m.StoredBytes())
			}
			bar := progress.New(stderrFile(g), "verifying", total)
			for _, m := range ms {
				err := r.Verify(ctx, m, bar.Add)
				switch {
				case err == nil:
					fmt.Fprintf(g.stdout, "%s  ok       %s\n", m.ID()[:12], m.Ref())
				case errors.Is(err, repo.ErrCorrupt):
					damaged = append(damaged, err)
					fmt.Fprintf(g.stdout, "%s  DAMAGED  %s\n", m.ID()[:12], m.Ref())
					for _, line := range strings.Split(err.Error(), "\n") {
						fmt.Fprintf(g.stderr, "ckpt: %s\n", line)
					}
				default:
					bar.Done()
					return err
				}
			}
			bar.Done()
			if len(damaged) > 0 {
				return withCode(exitDamaged, fmt.Errorf("%d of %d checkpoint(s) damaged", len(damaged), len(ms)+len(damaged)-countCorrupt(damaged, ms)))
			}
			return nil
		},
	}
	return c
}

// countCorrupt avoids double counting damaged listed checkpoints.
func countCorrupt(damaged []error, ms []*repo.Manifest) int {
	n := 0
	for _, d := range damaged {
		var ce *repo.CorruptError
		if errors.As(d, &ce) {
			for _, m := range ms {
				if m.ID() == ce.Checkpoint {
					n++
					break
				}
			}
		}
	}
	return n
}

func stderrFile(g *globalOptions) *os.File {
	if f, ok := g.stderr.(*os.File); ok {
		return f
	}
	return nil
}

func newRmCommand(g *globalOptions) *cobra.Command {
	var keep int
	var gc bool
	c := &cobra.Command{
		Use:   "rm ID|NAME|NAME@SEQ...",
		Short: "Remove checkpoints",
		Long: `Remove checkpoints. Their chunks are freed by 'ckpt gc' (or --gc), since
other checkpoints may share them. A bare NAME removes the newest checkpoint of
that name; with --keep N it removes all but the newest N of NAME instead.`,
		Example: `  ckpt rm 3fa9c2d1
  ckpt rm --keep 3 heat      # retention: keep the last 3 of "heat"
  ckpt rm --gc heat@4`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("rm: expected at least one checkpoint reference (see 'ckpt rm --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx, false)
			if err != nil {
				return err
			}
			defer r.Close()
			for _, ref := range args {
				if keep > 0 {
					removed, err := r.Retain(ctx, ref, keep)
					if err != nil {
						return err
					}
					for _, m := range removed {
						fmt.Fprintln(g.stdout, m.ID())
					}
					continue
				}
				ms, err := r.Resolve(ctx, ref)
				if err != nil {
					return err
				}
				if err := r.Remove(ctx, ms[0].ID()); err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, ms[0].ID())
			}
			if gc {
				return runGC(ctx, g, r)
			}
			return nil
		},
	}
	c.Flags().IntVar(&keep, "keep", 0, "retention: keep the newest N checkpoints of each NAME given, remove the rest")
	c.Flags().BoolVar(&gc, "gc", false, "run gc afterwards")
	return c
}

func newGCCommand(g *globalOptions) *cobra.Command {
	var wait time.Duration
	c := &cobra.Command{
		Use:   "gc",
		Short: "Delete chunks no checkpoint references",
		Long: `Delete chunks that no checkpoint references and leftovers of interrupted
writes. gc waits (up to --wait) for checkpoints being written, and writers
wait for it: it is safe to run at any time.

On an agent:// repository the agent does the work, under its own lock and
without the key (it knows every checkpoint's chunks from its level
records): partner copies it holds for other nodes count as references.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if loc := g.repoDir; strings.HasPrefix(loc, "agent://") {
				return agentGC(cmd.Context(), g, loc, wait)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			r, err := g.openRepo(ctx, false)
			if err != nil {
				return err
			}
			defer r.Close()
			return runGC(ctx, g, r)
		},
	}
	c.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for running writers")
	return c
}

// agentGC asks the agent at loc to collect its group's store.
func agentGC(ctx context.Context, g *globalOptions, loc string, wait time.Duration) error {
	tok, err := backend.AgentTokenFromEnv("")
	if err != nil {
		return err
	}
	a, err := backend.OpenAgent(ctx, loc, tok)
	if err != nil {
		return err
	}
	defer a.Close()
	var st agent.GCResult
	if err := a.GC(ctx, wait, &st); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "gc on %s: %d checkpoints, %d chunks, removed %d chunks (%s)\n",
		loc, st.Checkpoints, st.Chunks, st.Removed, progress.Bytes(st.RemovedBytes))
	return nil
}

func runGC(ctx context.Context, g *globalOptions, r *repo.Repository) error {
	st, err := r.GC(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "gc: %d checkpoints, %d chunks, removed %d chunks (%s), %d temporary files\n",
		st.Checkpoints, st.Chunks, st.Removed, progress.Bytes(st.RemovedBytes), st.TmpFilesFreed)
	return nil
}

func newInspectCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect ID|NAME",
		Short: "Show what a checkpoint holds",
		Long: `Show a checkpoint: its manifest (name, sequence, parent, objects, chunks)
and, for process checkpoints, the process image: processes, threads, memory
areas with sizes and kinds, files, pipes and signal dispositions.`,
		Args: exactArgs(1, "one checkpoint reference"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx, false)
			if err != nil {
				return err
			}
			defer r.Close()
			m, err := g.resolve(ctx, r, args[0], false)
			if err != nil {
				return err
			}
			if asJSON {
				type inspectJSON struct {
					checkpointJSON
					Chunks  int           `json:"chunks"`
					Objects []repo.Object `json:"object_list"`
					Process any           `json:"process,omitempty"`
				}
				out := inspectJSON{checkpointJSON: toJSON(m), Chunks: len(m.Chunks), Objects: m.Objects}
				if out.Process, err = kindJSON(ctx, r, m); err != nil {
					return err
				}
				return g.printJSON(out)
			}
			printManifest(g, m)
			return inspectKind(ctx, g, r, m)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

func printManifest(g *globalOptions, m *repo.Manifest) {
	w := g.stdout
	c := toJSON(m)
	fmt.Fprintf(w, "checkpoint %s\n", m.ID())
	fmt.Fprintf(w, "  name      %s\n", m.Ref())
	fmt.Fprintf(w, "  kind      %s\n", m.Kind)
	fmt.Fprintf(w, "  time      %s\n", m.Time.Local().Format(time.RFC3339Nano))
	if m.Parent != "" {
		fmt.Fprintf(w, "  parent    %s\n", m.Parent)
	}
	if m.Host != "" {
		fmt.Fprintf(w, "  host      %s\n", m.Host)
	}
	keys := make([]string, 0, len(m.Meta))
	for k := range m.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-9s %s\n", k, m.Meta[k])
	}
	fmt.Fprintf(w, "  data      %s in %d objects\n", progress.Bytes(int64(c.Size)), len(m.Objects))
	fmt.Fprintf(w, "  chunks    %d, %s plain\n", len(m.Chunks), progress.Bytes(int64(c.ChunkBytes)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nOBJECT\tTYPE\tSIZE\tDATA\tEXTENTS")
	for _, o := range m.Objects {
		var data uint64
		for _, e := range o.Extents {
			data += e.Len
		}
		size := progress.Bytes(int64(o.Size))
		if o.Type == "memory" {
			size = "sparse" // offsets are virtual addresses
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", o.Name, o.Type, size, progress.Bytes(int64(data)), len(o.Extents))
	}
	tw.Flush()
}

func newCpCommand(g *globalOptions) *cobra.Command {
	var to, toKey string
	c := &cobra.Command{
		Use:   "cp ID|NAME|NAME@SEQ... --to REPO",
		Short: "Copy checkpoints to another repository",
		Long: `Copy checkpoints to another repository (a directory or an S3 bucket),
sending only the chunks it lacks. Every chunk is checked against its address
on the way: damage is reported, never copied. Between repositories with the
same key (or both unencrypted) a checkpoint keeps its ID; otherwise it is
re-sealed for the destination and gets a new ID there, with the same name and
sequence number. The destination is created (unencrypted) if it does not
exist. Prints the IDs in the destination.

S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.`,
		Example: `  ckpt cp sim --to /shared/ckpt
  ckpt cp sim@7 --to s3:https://s3.example.org/bucket/ckpt`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 || to == "" {
				return usageError("cp: expected checkpoint references and --to REPO (see 'ckpt cp --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, err := g.openRepo(ctx, false)
			if err != nil {
				return err
			}
			defer src.Close()
			var key []byte
			if toKey != "" {
				if key, err = repo.ReadKeyFile(toKey); err != nil {
					return err
				}
			}
			dst, err := repo.OpenLocation(ctx, to, key, true)
			if err != nil {
				return err
			}
			defer dst.Close()
			for _, ref := range args {
				m, err := g.resolve(ctx, src, ref, false)
				if err != nil {
					return err
				}
				bar := progress.New(stderrFile(g), "copying "+m.Ref(), int64(m.StoredBytes()))
				out, st, err := src.CopyTo(ctx, m, dst, bar.Add)
				bar.Done()
				if err != nil {
					return fmt.Errorf("copying %s: %w", m.Ref(), err)
				}
				fmt.Fprintln(g.stdout, out.ID())
				if st.AlreadyThere {
					fmt.Fprintf(g.stderr, "%s: already in %s\n", m.Ref(), dst.Backend().Location())
				} else {
					fmt.Fprintf(g.stderr, "%s: sent %d of %d chunks (%s) to %s\n", m.Ref(), st.Copied, st.Chunks, progress.Bytes(st.CopiedBytes), dst.Backend().Location())
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "destination repository: a directory or s3:http(s)://HOST/BUCKET/PREFIX")
	c.Flags().StringVar(&toKey, "to-key-file", "", "key of the destination repository, if encrypted")
	return c
}
