package ckpt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/ckpt/ckpt/internal/repo"
)

// staged is one variable's bytes as the commit sees them.
type staged struct {
	v    *variable
	data []byte
}

// Checkpoint saves every protected value as a new checkpoint of the job.
//
// In async mode (the default) it first waits for the previous background
// commit; if that failed, it returns its error and takes no checkpoint (call
// again to retry). Otherwise it copies the protected values into the Job's
// staging buffers, starts the commit in the background and returns: the
// program may modify its values at once. The commit's outcome is returned by
// the next Checkpoint, Maybe, Wait or Close.
//
// In sync mode it returns once the checkpoint is committed.
func (j *Job) Checkpoint(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if !j.waitInflight(ctx) {
		return ctx.Err()
	}
	if err := j.takeErr(); err != nil {
		return err
	}
	if len(j.vars) == 0 {
		return errors.New("checkpoint: nothing is protected")
	}
	start := time.Now()
	j.lastStart = start
	snap, err := j.stage(j.opts.async)
	if err != nil {
		return err
	}
	if !j.opts.async {
		_, err := j.commit(ctx, snap, start, 0)
		return err
	}
	blocked := time.Since(start)
	done := make(chan struct{})
	j.inflight = done
	go func() {
		defer close(done)
		if _, err := j.commit(j.bg, snap, start, blocked); err != nil {
			j.log.Warn("background checkpoint commit failed", "err", err)
			j.bgErr = fmt.Errorf("committing checkpoint of %q in the background: %w", j.name, err)
		}
	}()
	return nil
}

// Maybe checkpoints when the interval (WithInterval) has passed since the
// last checkpoint started (or since Open), and reports whether it did.
func (j *Job) Maybe(ctx context.Context) (bool, error) {
	j.mu.Lock()
	due := time.Since(j.lastStart) >= j.opts.interval
	j.mu.Unlock()
	if !due {
		return false, nil
	}
	return true, j.Checkpoint(ctx)
}

// stage collects every variable's bytes. With copy, values that are saved
// from their own memory are copied into the staging buffer (async mode);
// without, the commit reads them in place (sync mode: the caller is
// blocked, so they cannot change).
func (j *Job) stage(copyLive bool) ([]staged, error) {
	snap := make([]staged, 0, len(j.vars))
	for _, v := range j.vars {
		if mem, ok := v.live(); ok {
			v.waitPrepared()
			if !copyLive {
				snap = append(snap, staged{v, mem})
				continue
			}
			if cap(v.staging) < len(mem) {
				v.staging = nil // let the old buffer go before the new one is allocated
				v.staging = make([]byte, len(mem))
			}
			v.staging = v.staging[:len(mem)]
			parallelCopy(v.staging, mem)
			snap = append(snap, staged{v, v.staging})
			continue
		}
		b, err := v.encode(v.staging[:0])
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %w", err)
		}
		v.staging = b
		snap = append(snap, staged{v, b})
	}
	return snap, nil
}

// commit writes snap as a new checkpoint, incremental against the last
// one, and applies retention.
func (j *Job) commit(ctx context.Context, snap []staged, start time.Time, blocked time.Duration) (CommitInfo, error) {
	t0 := time.Now()
	parent := j.parent
	if parent == nil {
		// A program that checkpoints without restoring first still
		// shares the blocks of the job's previous run.
		parent, _ = j.repo.Latest(ctx, j.name)
	}
	m, st, err := j.write(ctx, snap, parent, j.rewrite)
	if err != nil && parent != nil && errors.Is(err, repo.ErrCorrupt) {
		j.log.Warn("previous checkpoint is damaged; writing a full checkpoint", "parent", parent.Ref(), "err", err)
		m, st, err = j.write(ctx, snap, nil, true)
	}
	if err != nil {
		return CommitInfo{}, err
	}
	j.parent, j.rewrite = m, false
	info := CommitInfo{
		Seq: m.Seq, ID: m.ID(), Time: m.Time, Blocked: blocked, Duration: time.Since(t0),
		Bytes: st.Bytes, ReusedBytes: st.ReusedBytes, NewBytes: st.NewBytes, StoredBytes: st.StoredBytes,
	}
	if blocked == 0 {
		info.Blocked = time.Since(start)
	}
	if j.opts.keep > 0 {
		removed, err := j.repo.Retain(ctx, j.name, j.opts.keep)
		if err != nil {
			// The checkpoint is committed; failing it now would make the
			// caller retry for nothing. Older ones stay until next time.
			j.log.Warn("removing old checkpoints", "err", err)
		}
		info.Removed = len(removed)
	}
	j.log.Debug("checkpoint committed", "seq", info.Seq, "id", info.ID[:12], "bytes", info.Bytes,
		"new_bytes", info.NewBytes, "stored_bytes", info.StoredBytes, "blocked", info.Blocked, "duration", info.Duration)
	j.lastMu.Lock()
	j.last = info
	j.lastMu.Unlock()
	if j.opts.onCommit != nil {
		j.opts.onCommit(info)
	}
	return info, nil
}

// write stores one checkpoint.
//
// With rewrite, chunks already in the repository are stored again: after
// damage was found, identical content must not be deduplicated against a
// damaged copy (a deterministic program that recomputes the state of a
// damaged checkpoint produces exactly its chunks).
func (j *Job) write(ctx context.Context, snap []staged, parent *repo.Manifest, rewrite bool) (*repo.Manifest, repo.WriteStats, error) {
	w, err := j.repo.NewWriter(ctx, repo.WriterOptions{
		Name: j.name, Kind: repo.KindLibrary, Parent: parent, Codec: j.opts.codec, Rewrite: rewrite,
		// Two more workers than CPUs: a worker waiting for the disk in
		// Save leaves its CPU to one that hashes.
		Workers: runtime.GOMAXPROCS(0) + 2,
	})
	if err != nil {
		return nil, repo.WriteStats{}, err
	}
	for _, s := range snap {
		ow, err := w.Create(s.v.name, s.v.kind.objType(), s.v.attr())
		if err == nil {
			_, err = ow.Write(s.data)
		}
		if err == nil {
			err = ow.Close()
		}
		if err != nil {
			w.Abort()
			return nil, w.Stats(), fmt.Errorf("writing %q: %w", s.v.name, err)
		}
	}
	m, err := w.Commit(ctx)
	return m, w.Stats(), err
}
