// Package proccr connects the process dumper and restorer to the
// repository: a dump is committed as one process checkpoint (incremental
// against the newest checkpoint of the same name), and the process tree is
// killed or resumed only after the commit; a restore reads, verifies and
// rebuilds one.
package proccr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procstore"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
)

// DumpOptions control DumpToRepo.
type DumpOptions struct {
	Name         string // checkpoint name; default: the root's command name
	LeaveRunning bool   // resume the tree after the commit instead of killing it
	Full         bool   // do not use the previous checkpoint as parent
	// NoPreCopy turns off the pre-copy of a LeaveRunning dump.
	NoPreCopy bool
	// Codec compresses the chunks (the zero value: s2 where it pays;
	// repo.CodecNone trades space for dump time).
	Codec    repo.Codec
	Meta     map[string]string
	Progress func(int64)
	// Container, when set, is the cgroup of a container (`ckpt run
	// --isolate`) whose PID 1 is pid: the cgroup is frozen for the dump,
	// everything in it is dumped with the PIDs seen inside its PID
	// namespace, and the namespaces' state is recorded (container_linux.go).
	Container *container.Cgroup
	// Veth is the container's veth pair (container.ParseVeth), if it has one.
	Veth *image.NetIf
	// Tracking, with LeaveRunning, keeps write trackers in the tree from
	// one dump to the next (ckpt run): a dump whose parent is the
	// checkpoint the tracking describes reads only the pages written since
	// that checkpoint's freeze, without a pre-copy. The caller owns it
	// and closes it once the tree is gone (NewTracking).
	Tracking *Tracking
}

// Tracking is the write tracking Dump leaves in a tree between its
// checkpoints (DumpOptions.Tracking).
type Tracking struct {
	pc     *dump.PreCopy
	parent string // ID of the checkpoint pc describes
}

// NewTracking returns a tracking that follows nothing yet: the next dump
// given it reads every page, or pre-copies, and arms it.
func NewTracking() *Tracking { return &Tracking{} }

// Close stops tracking; the next dump given it arms it again.
func (t *Tracking) Close() {
	if t == nil {
		return
	}
	t.pc.Close()
	t.pc, t.parent = nil, ""
}

// usable reports whether t describes checkpoint parent.
func (t *Tracking) usable(parent *repo.Manifest) bool {
	return t != nil && t.pc != nil && parent != nil && parent.ID() == t.parent
}

// DumpResult describes a committed dump.
type DumpResult struct {
	Manifest *repo.Manifest
	Tree     *image.Tree
	// Stats are the final checkpoint's, with the chunks stored by its
	// pre-copy added to the new and stored counts.
	Stats repo.WriteStats
	// Frozen is how long the tree was stopped for the dump (from the
	// freeze to the resume or kill).
	Frozen time.Duration
	// PreCopied is the memory copied while the tree ran (LeaveRunning);
	// ArmStop the stop that created the write trackers before that.
	PreCopied uint64
	ArmStop   time.Duration
	// Read is the memory read while the tree was frozen; Unchanged the
	// memory found unwritten since the pre-copy or, with Tracking, since
	// the previous checkpoint, and so not read again.
	Read, Unchanged uint64
	// Tracked: only pages written since the previous checkpoint were
	// read (DumpOptions.Tracking).
	Tracked bool
	// PreCopyNote says why no pre-copy was done, when one was asked for.
	PreCopyNote string
}

// Meta key of a pre-copy checkpoint (value "true"): the parent of the real
// checkpoint while it is written, removed once that is committed.
const MetaPreCopy = "precopy"

// Dump checkpoints the tree rooted at pid into r. The tree stays frozen
// until every page is read. Without LeaveRunning it is killed after the
// commit; with LeaveRunning it is resumed as soon as everything is read,
// before the commit. On any error the tree is resumed, never left stopped.
//
// With LeaveRunning (unless NoPreCopy) memory is first copied while the
// tree runs, into a pre-copy checkpoint marked with MetaPreCopy, while the
// kernel tracks which pages are written (package dirty); the frozen dump
// then reads only the pages written since and refers to the pre-copy for
// the others, and the pre-copy checkpoint is removed after the commit.
func Dump(ctx context.Context, r *repo.Repository, pid int, opts DumpOptions) (res *DumpResult, err error) {
	name := opts.Name
	if name == "" {
		comm, err := commOf(pid)
		if err != nil {
			return nil, err
		}
		name = comm
	}
	if err := repo.ValidName(name); err != nil {
		return nil, err
	}
	var parent *repo.Manifest
	if !opts.Full {
		var err error
		if parent, err = r.Latest(ctx, name); err != nil {
			return nil, err
		}
		if parent != nil && parent.Kind != repo.KindProcess {
			parent = nil
		}
	}
	meta := map[string]string{"pid": strconv.Itoa(pid)}
	for k, v := range opts.Meta {
		meta[k] = v
	}
	res = &DumpResult{}
	dopts := dump.Options{LeaveRunning: opts.LeaveRunning}
	var ctr *containerDump
	if opts.Container != nil {
		ctr = &containerDump{cg: opts.Container, root: pid, veth: opts.Veth}
		dopts.PIDNamespace, dopts.Seized = true, ctr.seized
	}
	track := opts.Tracking
	if !opts.LeaveRunning {
		track = nil
	}
	if track != nil && !track.usable(parent) {
		// Another dump of the name came between (or none was made yet).
		track.Close()
	}
	var pre *dump.PreCopy
	var preM *repo.Manifest
	var preStats repo.WriteStats
	switch {
	case track.usable(parent):
		res.Tracked = true
		pre = track.pc
		// From here on it describes no committed image until the commit.
		track.parent = ""
		if !opts.NoPreCopy {
			preM, preStats, res.PreCopied, err = trackedPreCopy(ctx, r, pre, name, parent, meta, opts.Codec, opts.Progress)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				res.PreCopyNote = fmt.Sprintf("pre-copy failed: %v (all memory read while frozen)", err)
				track.Close()
				pre, res.Tracked = nil, false
			}
		}
	case opts.LeaveRunning && !opts.NoPreCopy:
		pre, preM, preStats, err = preCopy(ctx, r, pid, ctr != nil, track != nil, name, parent, meta, opts.Codec, opts.Progress, res)
		if err != nil {
			return nil, err
		}
		if pre != nil && track == nil {
			defer pre.Close()
		}
	}
	if preM != nil {
		parent = preM
		defer func() {
			if rerr := r.Remove(context.WithoutCancel(ctx), preM.ID()); rerr != nil {
				err = errors.Join(err, fmt.Errorf("removing the pre-copy checkpoint %s: %w", preM.ID()[:12], rerr))
			}
		}()
	}
	dopts.PreCopy = pre
	if track != nil {
		if pre == nil {
			pre = dump.NewTracking()
		}
		dopts.PreCopy, dopts.KeepTracking = pre, true
		track.pc = pre
		// Whatever fails before the commit leaves trackers that describe
		// no committed checkpoint.
		defer func() {
			if err != nil {
				track.Close()
			}
		}()
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Name: name, Kind: repo.KindProcess, Parent: parent, Meta: meta, Codec: opts.Codec})
	if err != nil {
		return nil, err
	}
	pw := procstore.NewPageWriter(w)
	pw.Progress = opts.Progress
	if ctr != nil {
		// The whole cgroup is frozen (after the pre-copy, which ran
		// with the container running) until every task is seized.
		if err := ctr.freeze(); err != nil {
			w.Abort()
			return nil, err
		}
		defer func() {
			if terr := ctr.thaw(); terr != nil {
				err = errors.Join(err, terr)
			}
		}()
	}
	h, err := dump.Checkpoint(ctx, pid, dopts, pw)
	if err != nil {
		w.Abort()
		return nil, err
	}
	if ctr != nil {
		h.Tree.Container = ctr.snap
		h.Tree.Container.Name = name
		h.Tree.Warnings = append(h.Tree.Warnings, ctr.warnings...)
	}
	if opts.LeaveRunning {
		// Every page is read: the tree runs on during the commit.
		if err := h.Resume(); err != nil {
			w.Abort()
			return nil, fmt.Errorf("resuming the process: %w", err)
		}
	}
	m, err := commit(ctx, w, pw, h.Tree)
	if err != nil {
		w.Abort()
		if opts.LeaveRunning {
			return nil, fmt.Errorf("%w (the process runs on)", err)
		}
		if rerr := h.Resume(); rerr != nil {
			return nil, errors.Join(err, fmt.Errorf("resuming the process after the failed dump: %w", rerr))
		}
		return nil, fmt.Errorf("%w (the process was resumed)", err)
	}
	if track != nil {
		track.parent = m.ID()
	}
	st := w.Stats()
	st.NewChunks += preStats.NewChunks
	st.NewBytes += preStats.NewBytes
	st.StoredBytes += preStats.StoredBytes
	st.DedupChunks += preStats.DedupChunks
	res.Manifest, res.Tree, res.Stats = m, h.Tree, st
	res.Read, res.Unchanged = pw.Counts()
	if !opts.LeaveRunning {
		if err := h.Finish(); err != nil {
			res.Frozen = h.Frozen()
			return res, fmt.Errorf("checkpoint %s committed, but: %w", m.ID()[:12], err)
		}
	}
	res.Frozen = h.Frozen()
	return res, nil
}

// preCopy arms write trackers in the running tree and copies its memory
// into a pre-copy checkpoint; keep: the trackers will be kept after the
// dump (Tracking). It returns a nil PreCopy, with the reason in
// res.PreCopyNote, when writes cannot be tracked or the copy failed for a
// reason the plain dump may not have; errors of the context are returned.
func preCopy(ctx context.Context, r *repo.Repository, pid int, container, keep bool, name string, parent *repo.Manifest, meta map[string]string, codec repo.Codec,
	progress func(int64), res *DumpResult) (*dump.PreCopy, *repo.Manifest, repo.WriteStats, error) {
	start := dump.StartPreCopy
	if container {
		start = dump.StartContainerPreCopy
	}
	pc, err := start(ctx, pid)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, repo.WriteStats{}, ctx.Err()
		}
		res.PreCopyNote = err.Error()
		return nil, nil, repo.WriteStats{}, nil
	}
	res.ArmStop = pc.ArmStop
	if keep {
		pc.SpareHugePages() // the trackers outlive this dump
	}
	m, st, n, err := writePreCopy(ctx, r, name, parent, meta, codec, progress, pc.Copy)
	if err != nil {
		pc.Close()
		if ctx.Err() != nil {
			return nil, nil, repo.WriteStats{}, ctx.Err()
		}
		res.PreCopyNote = "pre-copy failed: " + err.Error()
		return nil, nil, repo.WriteStats{}, nil
	}
	res.PreCopied = n
	return pc, m, st, nil
}

// writePreCopy commits what copy writes as a pre-copy checkpoint of name
// (meta MetaPreCopy, no tree) with the given parent, and returns it with
// its stats and the bytes copy copied.
func writePreCopy(ctx context.Context, r *repo.Repository, name string, parent *repo.Manifest, meta map[string]string, codec repo.Codec,
	progress func(int64), copy func(context.Context, image.PageWriter) (uint64, error)) (*repo.Manifest, repo.WriteStats, uint64, error) {
	pmeta := map[string]string{MetaPreCopy: "true", repo.MetaIncomplete: "pre-copy"}
	for k, v := range meta {
		pmeta[k] = v
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Name: name, Kind: repo.KindProcess, Parent: parent, Meta: pmeta, Codec: codec})
	if err != nil {
		return nil, repo.WriteStats{}, 0, err
	}
	pw := procstore.NewPageWriter(w)
	pw.Progress = progress
	n, err := copy(ctx, pw)
	var m *repo.Manifest
	if err == nil {
		if err = pw.CloseObjects(); err == nil {
			m, err = w.Commit(ctx)
		}
	}
	if err != nil {
		w.Abort()
		return nil, repo.WriteStats{}, 0, err
	}
	return m, w.Stats(), n, nil
}

// trackedPreCopyAbove: when the tree overwrote more of its previous
// checkpoint than this since (kept trackers), the pages it wrote are
// copied while it runs, so that the freeze reads only what is written
// during that copy (~40 ms of reading here at this size); below it the
// frozen pass reads them, without a second walk and commit.
const trackedPreCopyAbove = 64 << 20

// trackedPreCopy collects what the tree wrote since the checkpoint pc
// describes and, above trackedPreCopyAbove, copies it into a pre-copy
// checkpoint whose parent is that checkpoint (the rest declared
// unchanged). It returns no manifest when no copy was needed.
func trackedPreCopy(ctx context.Context, r *repo.Repository, pc *dump.PreCopy, name string, parent *repo.Manifest, meta map[string]string, codec repo.Codec,
	progress func(int64)) (*repo.Manifest, repo.WriteStats, uint64, error) {
	over, err := pc.CollectWritten()
	if err != nil || over < trackedPreCopyAbove {
		return nil, repo.WriteStats{}, 0, err
	}
	return writePreCopy(ctx, r, name, parent, meta, codec, progress, pc.CopyTracked)
}

func commit(ctx context.Context, w *repo.Writer, pw *procstore.PageWriter, tree *image.Tree) (*repo.Manifest, error) {
	if err := pw.Finish(tree); err != nil {
		return nil, err
	}
	return w.Commit(ctx)
}

// Restore verifies checkpoint m and rebuilds its process tree.
func Restore(ctx context.Context, r *repo.Repository, m *repo.Manifest, opts restore.Options, progress func(int64)) (*restore.Result, error) {
	tree, err := procstore.ReadTree(ctx, r, m)
	if err != nil {
		return nil, err
	}
	pr := procstore.NewPageReader(ctx, r, m)
	pr.Progress = progress
	return restore.Restore(ctx, tree, pr, opts)
}
