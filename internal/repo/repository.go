package repo

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/zeebo/blake3"
)

// Repository is an open checkpoint repository. It is safe for concurrent
// use; several processes may use one repository at once.
type Repository struct {
	be   backend.Backend
	cfg  Config
	keys *keys
	aead cipher.AEAD

	mu        sync.Mutex
	manifests map[string]*Manifest // decoded manifests by ID (immutable)
	known     sync.Map             // ID -> struct{}: chunks known to be stored
}

// Backend returns the storage under the repository.
func (r *Repository) Backend() backend.Backend { return r.be }

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// Encrypted reports whether the repository seals its data.
func (r *Repository) Encrypted() bool { return r.keys != nil }

// Close closes the backend.
func (r *Repository) Close() error { return r.be.Close() }

// repoLock is the lock writers hold shared and gc holds exclusive.
const repoLock = "repository"

func nameLock(name string) string {
	h := blake3.Sum256([]byte(name))
	return fmt.Sprintf("name-%x", h[:12])
}

// BadManifest is a manifest blob that could not be read.
type BadManifest struct {
	ID  string
	Err error
}

// List returns every readable checkpoint, newest first, and the manifests
// that could not be read.
func (r *Repository) List(ctx context.Context) ([]*Manifest, []BadManifest, error) {
	var ids []string
	err := r.be.List(ctx, backend.Manifest, func(in backend.Info) error {
		ids = append(ids, in.Name)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(ids)
	var ms []*Manifest
	var bad []BadManifest
	for _, id := range ids {
		m, err := r.Load(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			bad = append(bad, BadManifest{ID: id, Err: err})
			continue
		}
		ms = append(ms, m)
	}
	sortManifests(ms)
	return ms, bad, nil
}

// Load reads the manifest with the full ID id. Damage gives a *CorruptError;
// a missing manifest wraps ErrNotFound.
func (r *Repository) Load(ctx context.Context, id string) (*Manifest, error) {
	r.mu.Lock()
	m, ok := r.manifests[id]
	r.mu.Unlock()
	if ok {
		return m, nil
	}
	pid, err := ParseID(id)
	if err != nil {
		return nil, &CorruptError{Checkpoint: id, Reason: "manifest file name is not an ID"}
	}
	blob, err := r.be.Load(ctx, backend.Handle{Kind: backend.Manifest, Name: id})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s: %w", short(id), ErrNotFound)
		}
		return nil, err
	}
	m, err = r.decodeManifest(pid, blob)
	if err != nil {
		if errors.Is(err, ErrNewerFormat) {
			return nil, fmt.Errorf("checkpoint %s: %w", short(id), err)
		}
		return nil, &CorruptError{Checkpoint: id, Reason: "manifest: " + err.Error()}
	}
	r.mu.Lock()
	r.manifests[id] = m
	r.mu.Unlock()
	return m, nil
}

// MetaIncomplete marks a checkpoint that is a step towards another (a
// pre-copy pass): a bare NAME never resolves to it; its ID or NAME@SEQ do.
const MetaIncomplete = "incomplete"

// Resolve finds the checkpoints a reference names, best first:
//   - a hex prefix of at least 8 digits that matches a checkpoint ID: that one;
//   - NAME@SEQ: that sequence number of NAME;
//   - NAME: every checkpoint of NAME, newest first (callers that need "the
//     newest that verifies" try them in order).
func (r *Repository) Resolve(ctx context.Context, ref string) ([]*Manifest, error) {
	if ref == "" {
		return nil, errors.New("empty checkpoint reference")
	}
	ms, bad, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	if isHexPrefix(ref) {
		var hits []*Manifest
		for _, m := range ms {
			if strings.HasPrefix(m.ID(), ref) {
				hits = append(hits, m)
			}
		}
		var badHits []BadManifest
		for _, b := range bad {
			if strings.HasPrefix(b.ID, ref) {
				badHits = append(badHits, b)
			}
		}
		switch {
		case len(hits)+len(badHits) > 1:
			return nil, fmt.Errorf("%q: %w (%d matches)", ref, ErrAmbiguous, len(hits)+len(badHits))
		case len(hits) == 1:
			return hits, nil
		case len(badHits) == 1:
			return nil, badHits[0].Err
		}
	}
	name, seq, hasSeq := strings.Cut(ref, "@")
	if err := ValidName(name); err != nil {
		return nil, fmt.Errorf("%q: %w", ref, ErrNotFound)
	}
	var n uint64
	if hasSeq {
		if n, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return nil, fmt.Errorf("%q: sequence %q is not a number", ref, seq)
		}
	}
	var out []*Manifest
	for _, m := range ms {
		if m.Name == name && (hasSeq && m.Seq == n || !hasSeq && m.Meta[MetaIncomplete] == "") {
			out = append(out, m)
		}
	}
	// Newest first; at one sequence number (a pre-copy pass and the
	// checkpoint it led to) the complete one first.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq > out[j].Seq
		}
		return out[i].Meta[MetaIncomplete] == "" && out[j].Meta[MetaIncomplete] != ""
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: %w", ref, ErrNotFound)
	}
	return out, nil
}

func isHexPrefix(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Latest returns the newest checkpoint of name, or nil when there is none.
func (r *Repository) Latest(ctx context.Context, name string) (*Manifest, error) {
	ms, err := r.Resolve(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ms[0], nil
}

// loadChunk reads, checks and decodes one chunk.
func (r *Repository) loadChunk(ctx context.Context, id ID) ([]byte, error) {
	blob, err := r.be.Load(ctx, backend.Handle{Kind: backend.Chunk, Name: id.String()})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, errChunkMissing
		}
		return nil, err
	}
	plain, _, err := r.decodeChunk(id, blob)
	return plain, err
}

var errChunkMissing = errors.New("chunk is missing")

// chunkError turns a chunk read failure into a CorruptError naming the
// checkpoint and object, unless it is not damage (a cancelled context, an
// I/O error of the backend).
func chunkError(m *Manifest, obj string, id ID, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, errChunkMissing) || errors.Is(err, errChunkFormat) || !isIOError(err) {
		return &CorruptError{Checkpoint: m.ID(), Name: m.Ref(), Object: obj, Chunk: id.String(), Reason: err.Error()}
	}
	return fmt.Errorf("checkpoint %s object %q chunk %s: %w", short(m.ID()), obj, short(id.String()), err)
}

// isIOError reports errors of the storage itself (as opposed to bad content).
func isIOError(err error) bool {
	var pe interface{ Timeout() bool }
	return errors.As(err, &pe) || strings.Contains(err.Error(), "input/output error")
}

// Remove deletes a checkpoint's manifest (its chunks go at the next GC).
func (r *Repository) Remove(ctx context.Context, id string) error {
	if err := r.be.Remove(ctx, backend.Handle{Kind: backend.Manifest, Name: id}); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.manifests, id)
	r.mu.Unlock()
	return r.be.Sync(ctx)
}

// DropDamaged removes chunk id if it is damaged: stored, but failing its
// check. Writers deduplicate new content against stored chunks without
// reading them, so identical content written later (a deterministic program
// recomputing a damaged checkpoint's state) would otherwise refer to the
// damaged copy; once dropped, the next writer of that content stores it
// again, which also heals older checkpoints that refer to it. It reports
// whether it removed the chunk; an intact or missing chunk is left alone,
// and a read that fails for another reason (I/O) is returned as an error.
func (r *Repository) DropDamaged(ctx context.Context, id ID) (bool, error) {
	_, err := r.loadChunk(ctx, id)
	switch {
	case err == nil || errors.Is(err, errChunkMissing):
		return false, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	case isIOError(err):
		return false, err
	}
	if err := r.be.Remove(ctx, backend.Handle{Kind: backend.Chunk, Name: id.String()}); err != nil {
		return false, err
	}
	r.known.Delete(id)
	return true, r.be.Sync(ctx)
}

// Retain keeps the newest keep checkpoints of name and removes the others.
// It returns the removed ones.
func (r *Repository) Retain(ctx context.Context, name string, keep int) ([]*Manifest, error) {
	if keep < 1 {
		return nil, fmt.Errorf("keep must be at least 1, got %d", keep)
	}
	ms, err := r.Resolve(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(ms) <= keep {
		return nil, nil
	}
	drop := ms[keep:]
	for _, m := range drop {
		if err := r.be.Remove(ctx, backend.Handle{Kind: backend.Manifest, Name: m.ID()}); err != nil {
			return nil, err
		}
		r.mu.Lock()
		delete(r.manifests, m.ID())
		r.mu.Unlock()
	}
	return drop, r.be.Sync(ctx)
}

// GCStats reports what GC did.
type GCStats struct {
	Checkpoints   int   // live checkpoints scanned
	Chunks        int   // chunks found
	Removed       int   // chunks removed
	RemovedBytes  int64 // their stored size
	TmpFilesFreed int   // leftovers of dead writers
}

// GC removes chunks that no checkpoint references. It takes the repository
// lock exclusively, so it waits for running writers (until ctx ends) and no
// writer can start while it runs. It refuses to run while a manifest cannot
// be read, since the chunks it references cannot be known.
func (r *Repository) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	unlock, err := r.be.Lock(ctx, repoLock, true)
	if err != nil {
		return st, fmt.Errorf("gc: waiting for checkpoints being written: %w", err)
	}
	defer unlock.Unlock()
	r.mu.Lock()
	r.manifests = map[string]*Manifest{} // re-read: another process may have removed some
	r.mu.Unlock()
	ms, bad, err := r.List(ctx)
	if err != nil {
		return st, err
	}
	if len(bad) > 0 {
		return st, fmt.Errorf("gc: checkpoint %s cannot be read (%v); remove it with 'ckpt rm %s' first", short(bad[0].ID), bad[0].Err, short(bad[0].ID))
	}
	st.Checkpoints = len(ms)
	live := map[string]bool{}
	for _, m := range ms {
		for _, c := range m.Chunks {
			live[c.ID] = true
		}
	}
	var dead []backend.Info
	err = r.be.List(ctx, backend.Chunk, func(in backend.Info) error {
		st.Chunks++
		if !live[in.Name] {
			dead = append(dead, in)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for _, in := range dead {
		if err := r.be.Remove(ctx, in.Handle); err != nil {
			return st, err
		}
		if id, err := ParseID(in.Name); err == nil {
			r.known.Delete(id)
		}
		st.Removed++
		st.RemovedBytes += in.Size
	}
	if c, ok := r.be.(interface {
		CleanTmp(context.Context) (int, error)
	}); ok {
		if st.TmpFilesFreed, err = c.CleanTmp(ctx); err != nil {
			return st, err
		}
	}
	return st, r.be.Sync(ctx)
}

// now is the clock; tests may replace it.
var now = func() time.Time { return time.Now().UTC() }
