package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
	"github.com/ckpt/ckpt/internal/repo"
)

// Retention of the levels (docs/AGENT.md, "Retention and gc"):
//
//   - when a client removes a checkpoint from this node's store (the
//     library's and ckpt run's keep-N, ckpt rm), a drop job removes its
//     partner copy and its fragments on the other nodes, then its level
//     records here; a holder that cannot be reached is tried again with
//     the flusher's backoff. Durable copies stay (durable storage has its
//     own retention: ckpt retain/rm/gc on that location).
//   - levels.partner.keep / levels.erasure.keep N keep the copies of only
//     the newest N checkpoints of each name at that level.
//   - gc (POST …/gc) removes the chunks of the group's store that no
//     manifest there references, under the repository lock held
//     exclusively, so no writer, copy or flush runs beside it.

// drop removes the copies of a checkpoint the origin removed. It reports
// whether something failed (the flusher tries again later).
func (s *Server) drop(ctx context.Context, j job) (failed bool) {
	g := j.g
	log := s.log.With("group", g.name, "checkpoint", j.id)
	unlock, ok := g.locks.hold(ctx, repo.RepositoryLock, false)
	if !ok {
		return false
	}
	defer unlock()
	if _, err := g.store.Stat(ctx, backend.Handle{Kind: backend.Manifest, Name: j.id}); err == nil {
		return false // committed here again meanwhile: nothing to drop
	}
	rm := func(level string) {
		if err := g.store.Remove(ctx, levels.RecordHandle(j.id, level)); err != nil {
			log.Warn("removing level record", "level", level, "err", err)
		}
	}
	if _, err := levels.LoadRecord(ctx, g.store, j.id, levels.Local); errors.Is(err, backend.ErrNotExist) {
		// Not a checkpoint of this node (a partner copy it held), or one
		// never flushed: only its records go.
		rm(levels.Partner)
		g.store.Sync(ctx)
		return false
	}
	for _, l := range []string{levels.Partner, levels.Erasure} {
		r, err := levels.LoadRecord(ctx, g.store, j.id, l)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err == nil {
			err = s.dropLevel(ctx, g, j.id, r)
		}
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			log.Warn("dropping the copy of a removed checkpoint", "level", l, "err", err)
			s.met.flushErrors.WithLabelValues(l).Inc()
			s.met.levelFailed(l, fmt.Errorf("dropping %s: %w", j.id, err), time.Now())
			failed = true
			continue
		}
		rm(l)
		s.met.drops.WithLabelValues(l).Inc()
	}
	if failed {
		g.store.Sync(ctx)
		return true
	}
	rm(levels.Durable)
	rm(levels.Local) // last: while it is there, a restart finds the job again
	if err := g.store.Sync(ctx); err != nil {
		log.Warn("removing level records", "err", err)
	}
	log.Info("dropped the copies of a removed checkpoint")
	return false
}

// dropLevel removes checkpoint id's copy at the level of record r.
func (s *Server) dropLevel(ctx context.Context, g *group, id string, r *levels.Record) error {
	switch r.Level {
	case levels.Partner:
		if r.Where == "" {
			return nil // never copied (chunks sent by a try cut short go at the holder's gc)
		}
		host, _, err := backend.ParseAgent(r.Where)
		if err != nil {
			return fmt.Errorf("partner record: %w", err)
		}
		dst := backend.NewAgent(host, g.name, g.token)
		dst.Origin = s.cfg.Node
		if err := dst.Remove(ctx, backend.Handle{Kind: backend.Manifest, Name: id}); err != nil {
			return err
		}
		if err := dst.Remove(ctx, levels.RecordHandle(id, levels.Partner)); err != nil {
			return err
		}
		return dst.Sync(ctx)
	case levels.Erasure:
		var errs []string
		for _, f := range r.Fragments {
			name := levels.FragmentName(id, f.Index)
			var err error
			if f.Node == s.cfg.Node {
				err = g.frags.RemoveFragment(ctx, name)
			} else if s.cfg.Addr(f.Node) == "" {
				continue // no longer a peer
			} else {
				err = s.peer(g, f.Node).RemoveFragment(ctx, name)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("node %s: %v", f.Node, err))
			}
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, "; "))
		}
	}
	return nil
}

// retain applies the level's keep to the checkpoints of series: copies of
// checkpoints older than the newest keep complete there are dropped, and
// their records say so.
func (s *Server) retain(ctx context.Context, g *group, series, level string) {
	keep := 0
	switch level {
	case levels.Partner:
		keep = s.cfg.Levels.Partner.Keep
	case levels.Erasure:
		keep = s.cfg.Levels.Erasure.Keep
	}
	if keep <= 0 || series == "" {
		return
	}
	type ckpt struct {
		id  string
		seq uint64
	}
	var all []ckpt
	err := g.store.List(ctx, backend.Level, func(in backend.Info) error {
		id, ok := strings.CutSuffix(in.Name, "."+levels.Local)
		if !ok {
			return nil
		}
		if r, err := levels.LoadRecord(ctx, g.store, id, levels.Local); err == nil && r.Series == series {
			all = append(all, ckpt{id, r.Seq})
		}
		return nil
	})
	if err != nil {
		s.log.Warn("retention: listing level records", "group", g.name, "err", err)
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq > all[j].seq })
	kept := 0
	for _, c := range all {
		r, err := levels.LoadRecord(ctx, g.store, c.id, level)
		if err != nil || !r.Complete {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		if err := s.dropLevel(ctx, g, c.id, r); err != nil {
			s.log.Warn("retention: dropping a copy", "group", g.name, "checkpoint", c.id, "level", level, "err", err)
			continue
		}
		r.Complete, r.Dropped, r.Time = false, true, time.Now().UTC()
		r.Error = "dropped by retention (keep " + strconv.Itoa(keep) + ")"
		if err := levels.SaveRecord(ctx, g.store, c.id, r); err != nil {
			s.log.Warn("retention: saving level record", "err", err)
		}
		s.met.drops.WithLabelValues(level).Inc()
	}
}

// GCResult is the answer of POST …/gc.
type GCResult struct {
	Checkpoints  int   `json:"checkpoints"`
	Chunks       int   `json:"chunks"`
	Removed      int   `json:"removed"`
	RemovedBytes int64 `json:"removed_bytes"`
}

// errGCUnknown: a checkpoint's chunks cannot be known.
var errGCUnknown = errors.New("gc: chunks of a checkpoint unknown")

// gc removes the chunks of g's store that no manifest references. The
// chunk lists come from the level records (which hold them for encrypted
// checkpoints too) or the manifest itself; when neither tells, gc refuses
// (run 'ckpt gc' with the key instead). It waits up to lockWait for the
// store's writers to finish.
func (s *Server) gc(ctx context.Context, g *group, lockWait time.Duration) (GCResult, error) {
	var res GCResult
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	unlock, ok := g.locks.hold(lctx, repo.RepositoryLock, true)
	cancel()
	if !ok {
		return res, backend.ErrLocked
	}
	defer unlock()
	live := map[string]struct{}{}
	err := g.store.List(ctx, backend.Manifest, func(in backend.Info) error {
		res.Checkpoints++
		for _, l := range []string{levels.Local, levels.Partner} {
			if r, err := levels.LoadRecord(ctx, g.store, in.Name, l); err == nil && r.Chunks != nil {
				for _, c := range r.Chunks {
					live[c] = struct{}{}
				}
				return nil
			}
		}
		_, _, chunks, err := s.readManifest(ctx, g, in.Name)
		if err != nil {
			return fmt.Errorf("%w: checkpoint %s: %v (run 'ckpt gc' with the key)", errGCUnknown, in.Name, err)
		}
		for _, c := range chunks {
			live[c] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	var dead []backend.Info
	err = g.store.List(ctx, backend.Chunk, func(in backend.Info) error {
		res.Chunks++
		if _, ok := live[in.Name]; !ok {
			dead = append(dead, in)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	for _, in := range dead {
		if err := g.store.Remove(ctx, in.Handle); err != nil {
			return res, err
		}
		res.Removed++
		res.RemovedBytes += in.Size
	}
	return res, g.store.Sync(ctx)
}

func (s *Server) gcHandler(w http.ResponseWriter, r *http.Request, g *group) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("timeout_ms"))
	if ms <= 0 {
		ms = 30000
	}
	res, err := s.gc(r.Context(), g, time.Duration(ms)*time.Millisecond)
	switch {
	case errors.Is(err, backend.ErrLocked):
		httpError(w, http.StatusConflict, "locked", "gc: the repository is in use (writers, copies or flushes) for %d ms", ms)
	case errors.Is(err, errGCUnknown):
		httpError(w, http.StatusConflict, "unknown_chunks", "%v", err)
	case err != nil:
		httpError(w, http.StatusInternalServerError, "io", "gc: %v", err)
	default:
		s.log.Info("gc", "group", g.name, "checkpoints", res.Checkpoints, "chunks", res.Chunks, "removed", res.Removed)
		writeJSON(w, res)
	}
}
