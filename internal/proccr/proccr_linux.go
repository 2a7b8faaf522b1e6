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
	Meta         map[string]string
	Progress     func(int64)
}

// DumpResult describes a committed dump.
type DumpResult struct {
	Manifest *repo.Manifest
	Tree     *image.Tree
	Stats    repo.WriteStats
}

// Dump checkpoints the tree rooted at pid into r. The tree stays frozen
// until the checkpoint is committed; then it is killed, or resumed with
// LeaveRunning. On any error the tree is resumed, never left stopped.
func Dump(ctx context.Context, r *repo.Repository, pid int, opts DumpOptions) (*DumpResult, error) {
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
	w, err := r.NewWriter(ctx, repo.WriterOptions{Name: name, Kind: repo.KindProcess, Parent: parent, Meta: meta})
	if err != nil {
		return nil, err
	}
	pw := procstore.NewPageWriter(w)
	pw.Progress = opts.Progress
	h, err := dump.Checkpoint(ctx, pid, dump.Options{LeaveRunning: opts.LeaveRunning}, pw)
	if err != nil {
		w.Abort()
		return nil, err
	}
	m, err := commit(ctx, w, pw, h.Tree)
	if err != nil {
		w.Abort()
		if rerr := h.Resume(); rerr != nil {
			return nil, errors.Join(err, fmt.Errorf("resuming the process after the failed dump: %w", rerr))
		}
		return nil, fmt.Errorf("%w (the process was resumed)", err)
	}
	st := w.Stats()
	if err := h.Finish(); err != nil {
		return &DumpResult{Manifest: m, Tree: h.Tree, Stats: st}, fmt.Errorf("checkpoint %s committed, but: %w", m.ID()[:12], err)
	}
	return &DumpResult{Manifest: m, Tree: h.Tree, Stats: st}, nil
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
