package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
	"github.com/ckpt/ckpt/internal/repo"
)

// job asks the flusher to move checkpoint id of group g up the levels.
type job struct {
	g    *group
	id   string
	note *Committed // from POST .../committed; nil when noticed on Sync
	// tries counts the tries so far of the levels that failed (0 for a
	// new job).
	tries int
	// drop: the origin removed the checkpoint; remove its copies on the
	// other levels instead.
	drop bool
}

// flusher moves checkpoints up the levels one at a time, in the order they
// were committed. Its queue holds only (group, ID) pairs; what a job needs
// is read from the store when it runs.
type flusher struct {
	s   *Server
	mu  sync.Mutex
	q   []job
	set map[string]bool // group/id queued or running
	// running is the key of the job being processed; again holds a job
	// added while it ran: it may bring news (a committed notice) the
	// running job read the store too early to see, so it runs once more.
	running string
	again   map[string]job
	wake    chan struct{}
	idle    chan struct{} // closed while nothing is queued or running

	ctx      context.Context // the flusher's, while run runs
	retries  int             // jobs waiting for a retry (not queued)
	maxQueue int             // jobs held in memory at most
	overflow bool            // a job found the queue full since the scan began
	scanning bool
}

func newFlusher(s *Server) *flusher {
	f := &flusher{s: s, set: map[string]bool{}, again: map[string]job{}, wake: make(chan struct{}, 1), idle: make(chan struct{}), maxQueue: s.cfg.Limits.MaxQueue}
	close(f.idle)
	return f
}

func (f *flusher) enqueue(j job) {
	if j.note != nil {
		// Persist what the note says before acknowledging it, so the job
		// survives a restart of the agent.
		if err := f.s.saveLocalRecord(context.Background(), j.g, j.id, j.note.Seq, j.note.Series, j.note.Chunks); err != nil {
			f.s.log.Warn("saving local level record", "group", j.g.name, "id", j.id, "err", err)
		}
		j.note = nil
	}
	f.add(j, false)
}

// add queues j. The queue is bounded (limits.max_queue): a job that finds
// it full is left to the store, where a scan finds it again (every job's
// state is on disk: a manifest without complete level records, or a local
// record without its manifest), so memory does not grow with the number
// of checkpoints waiting.
func (f *flusher) add(j job, fromScan bool) {
	key := j.key()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.set[key] {
		if key == f.running {
			f.again[key] = j
		}
		return
	}
	if !fromScan && len(f.q) >= f.maxQueue {
		f.overflow = true
		f.startScanLocked()
		return
	}
	if len(f.set) == 0 {
		f.idle = make(chan struct{})
	}
	f.set[key] = true
	f.q = append(f.q, j)
	f.s.met.queue.Set(float64(len(f.q)))
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// scanKey holds the flusher busy while a scan runs, so a waiter never
// sees it idle before the scan queued its jobs.
const scanKey = "\x00scan"

// start sets the flusher's context and starts the scan of the stores;
// run must follow.
func (f *flusher) start(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctx = ctx
	f.startScanLocked()
}

// done ends the job (or scan) with key; it reports whether the job was
// queued again because it was added while it ran.
func (f *flusher) done(key string) (rerun bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if key == f.running {
		f.running = ""
	}
	if j, ok := f.again[key]; ok {
		delete(f.again, key)
		f.q = append(f.q, j)
		f.s.met.queue.Set(float64(len(f.q)))
		select {
		case f.wake <- struct{}{}:
		default:
		}
		return true
	}
	delete(f.set, key)
	f.s.met.queue.Set(float64(len(f.q)))
	if len(f.set) == 0 {
		close(f.idle)
	}
	return false
}

func (f *flusher) run(ctx context.Context) {
	for {
		f.mu.Lock()
		var j job
		ok := len(f.q) > 0
		if ok {
			j = f.q[0]
			f.q[0] = job{}
			f.q = f.q[1:]
			f.running = j.key()
		}
		f.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-f.wake:
				continue
			}
		}
		var failed bool
		if j.drop {
			failed = f.s.drop(ctx, j)
		} else {
			failed = f.s.process(ctx, j)
		}
		// A job run again at once needs no retry of its own.
		if rerun := f.done(j.key()); failed && !rerun {
			f.later(j)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// later queues j again after the backoff of its next try, unless it has
// had all its tries. A retry waiting is not "queued": waiters do not wait
// for it.
func (f *flusher) later(j job) {
	rc := f.s.cfg.Levels.Retry
	j.tries++
	if j.tries >= rc.Attempts {
		return
	}
	f.mu.Lock()
	ctx := f.ctx
	f.retries++
	f.s.met.retries.Set(float64(f.retries))
	f.mu.Unlock()
	time.AfterFunc(rc.delay(j.tries+1), func() {
		f.mu.Lock()
		f.retries--
		f.s.met.retries.Set(float64(f.retries))
		f.mu.Unlock()
		if ctx.Err() == nil {
			f.enqueue(j)
		}
	})
}

// RetriesScheduled is the number of failed flush jobs waiting for their
// next try (not counted by QueueLen or the flush wait).
func (s *Server) RetriesScheduled() int {
	s.flush.mu.Lock()
	defer s.flush.mu.Unlock()
	return s.flush.retries
}

// QueueLen is the number of flush jobs held in memory.
func (s *Server) QueueLen() int {
	s.flush.mu.Lock()
	defer s.flush.mu.Unlock()
	return len(s.flush.q)
}

// wait waits until nothing is queued or ctx ends; it returns what is left.
func (f *flusher) wait(ctx context.Context) int {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.set)
}

// startScanLocked starts a scan unless one runs (f.mu held).
func (f *flusher) startScanLocked() {
	if f.scanning || f.ctx == nil {
		return
	}
	f.scanning = true
	if len(f.set) == 0 {
		f.idle = make(chan struct{})
	}
	f.set[scanKey] = true
	go f.scanLoop(f.ctx)
}

// scanLoop scans the stores until a scan ran without the queue
// overflowing meanwhile.
func (f *flusher) scanLoop(ctx context.Context) {
	for {
		f.mu.Lock()
		f.overflow = false
		f.mu.Unlock()
		f.scan(ctx)
		f.mu.Lock()
		again := f.overflow && ctx.Err() == nil
		if !again {
			f.scanning = false
		}
		f.mu.Unlock()
		if !again {
			f.done(scanKey)
			return
		}
	}
}

// scan walks every group's store (streaming: one entry at a time) and
// queues, as room frees up, the checkpoints of this node that a level is
// still due for, and drop jobs for checkpoints removed before their
// copies were. It runs when the agent starts (levels not finished before
// a restart are done now) and after the queue overflowed.
func (f *flusher) scan(ctx context.Context) {
	names := make([]string, 0, len(f.s.groups))
	for n := range f.s.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := f.s.groups[n]
		err := g.store.List(ctx, backend.Manifest, func(in backend.Info) error {
			if !f.s.needsWork(ctx, g, in.Name) {
				return nil
			}
			return f.addWait(ctx, job{g: g, id: in.Name})
		})
		if err == nil {
			err = g.store.List(ctx, backend.Level, func(in backend.Info) error {
				id, ok := strings.CutSuffix(in.Name, "."+levels.Local)
				if !ok {
					return nil
				}
				if _, err := g.store.Stat(ctx, backend.Handle{Kind: backend.Manifest, Name: id}); !errors.Is(err, backend.ErrNotExist) {
					return nil
				}
				return f.addWait(ctx, job{g: g, id: id, drop: true})
			})
		}
		if err != nil && ctx.Err() == nil {
			f.s.log.Warn("scanning the store for unfinished levels", "group", g.name, "err", err)
		}
	}
}

// addWait queues j once the queue has room.
func (f *flusher) addWait(ctx context.Context, j job) error {
	for {
		f.mu.Lock()
		room := len(f.q) < max(1, f.maxQueue/2)
		f.mu.Unlock()
		if room {
			f.add(j, true)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// needsWork reports whether checkpoint id in g's store is this node's and
// a level the policy asks for is neither complete nor dropped there.
func (s *Server) needsWork(ctx context.Context, g *group, id string) bool {
	local, err := levels.LoadRecord(ctx, g.store, id, levels.Local)
	if errors.Is(err, backend.ErrNotExist) {
		_, perr := levels.LoadRecord(ctx, g.store, id, levels.Partner)
		return errors.Is(perr, backend.ErrNotExist) // else a copy held for a peer
	}
	if err != nil {
		return true
	}
	pol := s.cfg.Levels
	for _, l := range []struct {
		level string
		every int
	}{{levels.Partner, pol.Partner.Every}, {levels.Erasure, pol.Erasure.Every}, {levels.Durable, pol.Durable.Every}} {
		if l.every <= 0 || local.Seq%uint64(l.every) != 0 {
			continue
		}
		r, err := levels.LoadRecord(ctx, g.store, id, l.level)
		if err != nil || !r.Complete && !r.Dropped {
			return true
		}
	}
	return false
}

func (s *Server) where(g *group) string { return "agent://" + s.cfg.Addr(s.cfg.Node) + "/" + g.name }

func (s *Server) saveLocalRecord(ctx context.Context, g *group, id string, seq uint64, series string, chunks []string) error {
	if chunks == nil {
		chunks = []string{}
	}
	return levels.SaveRecord(ctx, g.store, id, &levels.Record{
		Level: levels.Local, Complete: true, Time: time.Now().UTC(), Where: s.where(g), Seq: seq, Series: series, Chunks: chunks,
	})
}

func (j job) key() string {
	if j.drop {
		return j.g.name + "/-" + j.id
	}
	return j.g.name + "/" + j.id
}

// process moves one checkpoint to every level the policy asks for and
// that it is not complete at yet. Failures are recorded (and counted) per
// level; the local copy is never touched. It reports whether a level
// failed (then the flusher tries again later).
func (s *Server) process(ctx context.Context, j job) (failed bool) {
	g := j.g
	log := s.log.With("group", g.name, "checkpoint", j.id)
	// Hold the group's repository lock shared: gc waits until the chunks
	// are read.
	unlock, ok := g.locks.hold(ctx, repo.RepositoryLock, false)
	if !ok {
		return false
	}
	defer unlock()
	if _, err := g.store.Stat(ctx, backend.Handle{Kind: backend.Manifest, Name: j.id}); errors.Is(err, backend.ErrNotExist) {
		return false // removed meanwhile: a drop job follows
	}
	local, err := levels.LoadRecord(ctx, g.store, j.id, levels.Local)
	if errors.Is(err, backend.ErrNotExist) {
		seq, series, chunks, rerr := s.readManifest(ctx, g, j.id)
		if rerr != nil {
			if errors.Is(rerr, repo.ErrKeyRequired) {
				log.Info("encrypted checkpoint: waiting for the client's committed notification")
			} else {
				log.Warn("reading manifest", "err", rerr)
			}
			return false
		}
		if err := s.saveLocalRecord(ctx, g, j.id, seq, series, chunks); err != nil {
			log.Warn("saving level record", "err", err)
			return ctx.Err() == nil
		}
		local, err = levels.LoadRecord(ctx, g.store, j.id, levels.Local)
	}
	if err != nil {
		log.Warn("reading level record", "err", err)
		return false
	}
	pol := s.cfg.Levels
	due := func(every int) bool { return every > 0 && local.Seq%uint64(every) == 0 }
	steps := []struct {
		level string
		every int
		run   func(context.Context, *group, string, *levels.Record) (*levels.Record, error)
	}{
		{levels.Partner, pol.Partner.Every, s.toPartner},
		{levels.Erasure, pol.Erasure.Every, s.toErasure},
		{levels.Durable, pol.Durable.Every, s.toDurable},
	}
	for _, st := range steps {
		if !due(st.every) || ctx.Err() != nil {
			continue
		}
		if r, err := levels.LoadRecord(ctx, g.store, j.id, st.level); err == nil && (r.Complete || r.Dropped) {
			continue
		}
		t0 := time.Now()
		rec, err := st.run(ctx, g, j.id, local)
		if rec == nil {
			rec = &levels.Record{Level: st.level}
		}
		rec.Level, rec.Time, rec.Seq = st.level, time.Now().UTC(), local.Seq
		if err != nil {
			if ctx.Err() != nil {
				return false // shutting down: not a failure of the level
			}
			failed = true
			rec.Complete, rec.Error, rec.Attempts = false, err.Error(), j.tries+1
			if rc := s.cfg.Levels.Retry; rec.Attempts < rc.Attempts {
				next := rec.Time.Add(rc.delay(rec.Attempts + 1))
				rec.Retry = &next
			}
			s.met.flushErrors.WithLabelValues(st.level).Inc()
			s.met.levelFailed(st.level, err, rec.Time)
			log.Warn("flush failed", "level", st.level, "attempt", rec.Attempts, "retry", rec.Retry, "err", err)
		} else {
			rec.Complete = true
			s.met.flushes.WithLabelValues(st.level).Inc()
			s.met.levelOK(st.level)
			log.Info("flushed", "level", st.level, "where", rec.Where, "took", time.Since(t0).Round(time.Millisecond))
		}
		if err := levels.SaveRecord(ctx, g.store, j.id, rec); err != nil {
			log.Warn("saving level record", "level", st.level, "err", err)
		}
		if rec.Complete {
			s.retain(ctx, g, local.Series, st.level)
		}
	}
	return failed
}

// readManifest reads the sequence number, series and chunk IDs of an
// unencrypted checkpoint; an encrypted one gives repo.ErrKeyRequired.
func (s *Server) readManifest(ctx context.Context, g *group, id string) (uint64, string, []string, error) {
	r, err := repo.Open(ctx, g.store, nil)
	if err != nil {
		return 0, "", nil, err
	}
	m, err := r.Load(ctx, id)
	if err != nil {
		return 0, "", nil, err
	}
	return m.Seq, r.SeriesTag(m.Name), levels.ChunkIDs(m), nil
}

func (s *Server) peer(g *group, node string) *backend.Agent {
	a := backend.NewAgent(s.cfg.Addr(node), g.name, g.token)
	a.Origin = s.cfg.Node
	return a
}

func (s *Server) toPartner(ctx context.Context, g *group, id string, local *levels.Record) (*levels.Record, error) {
	var order []string
	if p := s.cfg.Levels.Partner.Node; p != "" && p != s.cfg.Node {
		order = append(order, p)
	}
	for _, n := range s.cfg.Ring() {
		if n != s.cfg.Levels.Partner.Node {
			order = append(order, n)
		}
	}
	var errs []string
	for _, n := range order {
		dst := s.peer(g, n)
		st, err := levels.CopyCheckpoint(ctx, g.store, dst, id, local.Chunks)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, fmt.Sprintf("node %s: %v", n, err))
			continue
		}
		// The holder learns it is a partner copy (not a checkpoint of its
		// own), and which chunks it holds for it (for its gc).
		levels.SaveRecord(ctx, dst, id, &levels.Record{Level: levels.Partner, Complete: true, Time: time.Now().UTC(), Where: "copy from node " + s.cfg.Node, Seq: local.Seq, Series: local.Series, Chunks: local.Chunks})
		return &levels.Record{Where: dst.Location(), Bytes: st.SentBytes}, nil
	}
	return nil, fmt.Errorf("no partner took the copy: %s", strings.Join(errs, "; "))
}

func (s *Server) toErasure(ctx context.Context, g *group, id string, local *levels.Record) (*levels.Record, error) {
	ec := s.cfg.Levels.Erasure
	nodes := append([]string{s.cfg.Node}, s.cfg.Ring()...)[:ec.K+ec.M]
	sinks := make([]levels.FragmentSink, len(nodes))
	for i, n := range nodes {
		if n == s.cfg.Node {
			sinks[i] = g.frags
		} else {
			sinks[i] = s.peer(g, n)
		}
	}
	ok, err := levels.Encode(ctx, levels.EncodeInput{
		Src: g.store, ID: id, Chunks: local.Chunks, Seq: local.Seq, Time: local.Time,
		K: ec.K, M: ec.M, Stripe: ec.StripeKiB << 10, Stall: s.stall,
	}, sinks)
	rec := &levels.Record{K: ec.K, M: ec.M, Where: strings.Join(nodes, ",")}
	for i, n := range nodes {
		rec.Fragments = append(rec.Fragments, levels.FragmentPlace{Index: i, Node: n, OK: i < len(ok) && ok[i]})
	}
	return rec, err
}

func (s *Server) toDurable(ctx context.Context, g *group, id string, local *levels.Record) (*levels.Record, error) {
	loc := durableLocation(s.cfg.Levels.Durable.Location, g.name)
	dst, err := levels.OpenDurable(ctx, loc, true)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	st, err := levels.CopyCheckpoint(ctx, g.store, dst, id, local.Chunks)
	if err != nil {
		return nil, err
	}
	levels.SaveRecord(ctx, dst, id, &levels.Record{Level: levels.Durable, Complete: true, Time: time.Now().UTC(), Where: "copy from node " + s.cfg.Node, Seq: local.Seq})
	return &levels.Record{Where: loc, Bytes: st.SentBytes}, nil
}
