package ckpt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ckpt/ckpt/internal/repo"
)

// RestoreInfo says which checkpoint Restore used and what it passed over.
type RestoreInfo struct {
	Seq  uint64    // sequence number of the checkpoint restored
	ID   string    // its ID
	Time time.Time // when it was committed
	// Skipped lists newer checkpoints of the job that could not be
	// restored because they are damaged, newest first.
	Skipped []Skipped
	// Unreadable lists manifests in the repository that could not be read
	// at all. Their name is unknown, so they may have belonged to this job.
	Unreadable []Skipped
	// Ignored names objects of the checkpoint that no protected value took.
	Ignored []string
}

// Skipped is a checkpoint Restore could not use.
type Skipped struct {
	Seq uint64 // 0 when unknown (an unreadable manifest)
	ID  string
	Err error // wraps ErrCorrupt; a *repo.CorruptError names the object and chunk
}

// Restore loads the newest checkpoint of the job into the protected
// values. Every byte is checked against its hash as it is read; when the
// newest checkpoint is damaged, Restore falls back to the one before (and so
// on), logs a warning, and lists what it skipped in RestoreInfo. It returns
// an error wrapping ErrNoCheckpoint when the job has no checkpoint, and one
// wrapping ErrMismatch, before touching any value, when the checkpoint does
// not fit the protected values. On other errors the protected values may
// have been partly overwritten.
//
// The next checkpoint is incremental against the one restored.
func (j *Job) Restore(ctx context.Context) (RestoreInfo, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var info RestoreInfo
	if j.closed {
		return info, ErrClosed
	}
	if !j.waitInflight(ctx) {
		return info, ctx.Err()
	}
	all, bad, err := j.repo.List(ctx)
	if err != nil {
		return info, fmt.Errorf("restoring %q: listing checkpoints: %w", j.name, err)
	}
	for _, b := range bad {
		info.Unreadable = append(info.Unreadable, Skipped{ID: b.ID, Err: b.Err})
		j.log.Warn("unreadable checkpoint manifest in the repository", "id", b.ID, "err", b.Err)
	}
	var ms []*repo.Manifest
	for _, m := range all {
		if m.Name == j.name && m.Kind == repo.KindLibrary {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return info, fmt.Errorf("restoring %q from %s: %w", j.name, j.repo.Backend().Location(), ErrNoCheckpoint)
	}
	sort.SliceStable(ms, func(a, b int) bool { return ms[a].Seq > ms[b].Seq })
	for _, m := range ms {
		// Refuse a checkpoint that does not fit before touching anything.
		objs := make([]*repo.Object, len(j.vars))
		for i, v := range j.vars {
			objs[i] = m.Object(v.name)
			if err := v.check(m, objs[i]); err != nil {
				return info, err
			}
		}
		err := j.load(ctx, m, objs)
		if err == nil {
			info.Seq, info.ID, info.Time = m.Seq, m.ID(), m.Time
			info.Ignored = j.ignored(m)
			j.parent = m
			j.log.Info("restored checkpoint", "seq", m.Seq, "id", m.ID()[:12], "skipped", len(info.Skipped))
			return info, nil
		}
		if !errors.Is(err, repo.ErrCorrupt) {
			return info, err
		}
		info.Skipped = append(info.Skipped, Skipped{Seq: m.Seq, ID: m.ID(), Err: err})
		j.log.Warn("checkpoint is damaged; trying the one before", "seq", m.Seq, "id", m.ID()[:12], "err", err)
		j.dropDamaged(ctx, err)
	}
	return info, fmt.Errorf("restoring %q: every checkpoint (%d) is damaged; newest: %w", j.name, len(ms), info.Skipped[0].Err)
}

func (j *Job) load(ctx context.Context, m *repo.Manifest, objs []*repo.Object) error {
	for i, v := range j.vars {
		if err := v.load(ctx, j.repo, m, objs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (j *Job) ignored(m *repo.Manifest) []string {
	var out []string
	for _, o := range m.Objects {
		found := false
		for _, v := range j.vars {
			found = found || v.name == o.Name
		}
		if !found {
			out = append(out, o.Name)
		}
	}
	return out
}

// dropDamaged removes the damaged chunk err names, so that later
// checkpoints store a good copy of its content instead of referring to it.
func (j *Job) dropDamaged(ctx context.Context, err error) {
	var ce *repo.CorruptError
	if !errors.As(err, &ce) || ce.Chunk == "" {
		return
	}
	id, perr := repo.ParseID(ce.Chunk)
	if perr != nil {
		return
	}
	if dropped, derr := j.repo.DropDamaged(ctx, id); derr != nil {
		j.log.Warn("removing a damaged chunk", "chunk", ce.Chunk, "err", derr)
	} else if dropped {
		j.log.Warn("removed a damaged chunk; the next checkpoint that holds its content stores it again", "chunk", ce.Chunk)
	}
}
