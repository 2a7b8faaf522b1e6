package repo

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
)

// ObjectReader reads one object of a checkpoint. Every chunk is checked
// against its address as it is read; damage gives a *CorruptError naming the
// checkpoint, object and chunk.
type ObjectReader struct {
	r    *Repository
	m    *Manifest
	name string
	exts []Extent
	size uint64

	mu       sync.Mutex
	cache    []cachedChunk // most recently used last
	inflight map[uint32]*future
}

type cachedChunk struct {
	idx   uint32
	plain []byte
}

// readerCacheChunks bounds the decoded chunks a reader keeps: enough for
// incremental images whose extents alternate between a few chunks, plus
// the read-ahead.
const readerCacheChunks = 12

// readAhead is how many chunks a reader loads ahead of the one in use.
const readAhead = 4

// OpenObject opens the named object of m.
func (r *Repository) OpenObject(m *Manifest, name string) (*ObjectReader, error) {
	o := m.Object(name)
	if o == nil {
		return nil, fmt.Errorf("checkpoint %s (%s) has no object %q: %w", short(m.ID()), m.Ref(), name, ErrNotFound)
	}
	return &ObjectReader{r: r, m: m, name: name, exts: o.Extents, size: o.Size}, nil
}

// Size is the object's logical size (end of its last extent for sparse ones).
func (or *ObjectReader) Size() uint64 { return or.size }

// Range is a stretch of an object that holds data.
type Range struct{ Off, Len uint64 }

// Ranges lists the object's data ranges, ascending, adjacent extents merged.
func (or *ObjectReader) Ranges() []Range {
	var out []Range
	for _, e := range or.exts {
		if k := len(out) - 1; k >= 0 && out[k].Off+out[k].Len == e.Off {
			out[k].Len += e.Len
			continue
		}
		out = append(out, Range{e.Off, e.Len})
	}
	return out
}

// ReadAt fills p from offset off. Holes read as zeros; reading past Size
// returns io.EOF with the bytes before it.
func (or *ObjectReader) ReadAt(ctx context.Context, p []byte, off uint64) (int, error) {
	want := len(p)
	var eof error
	if off >= or.size {
		return 0, io.EOF
	}
	if uint64(want) > or.size-off {
		want = int(or.size - off)
		eof = io.EOF
	}
	p = p[:want]
	end := off + uint64(want)
	i := sort.Search(len(or.exts), func(k int) bool { return or.exts[k].Off+or.exts[k].Len > off })
	pos := off // bytes of p before pos are filled
	for ; i < len(or.exts) && or.exts[i].Off < end; i++ {
		e := or.exts[i]
		or.prefetch(ctx, i+1)
		plain, err := or.chunk(ctx, e.Chunk)
		if err != nil {
			return 0, err
		}
		lo, hi := max(e.Off, off), min(e.Off+e.Len, end)
		clear(p[pos-off : lo-off]) // a hole
		copy(p[lo-off:hi-off], plain[uint64(e.ChunkOff)+(lo-e.Off):])
		pos = hi
	}
	clear(p[pos-off:])
	return want, eof
}

// Segments calls fn, in offset order, with the object's data in
// [off, off+n): one call per extent (or the part of it in the window), b
// being the verified chunk's own bytes, not a copy. Holes are skipped. fn
// must not modify b; it may keep it (chunk buffers are not reused), so a
// caller can gather several segments into one vectored write. Chunks load
// and verify ahead of fn, in parallel, as with ReadAt.
func (or *ObjectReader) Segments(ctx context.Context, off, n uint64, fn func(off uint64, b []byte) error) error {
	end := min(off+n, or.size)
	i := sort.Search(len(or.exts), func(k int) bool { return or.exts[k].Off+or.exts[k].Len > off })
	for ; i < len(or.exts) && or.exts[i].Off < end; i++ {
		e := or.exts[i]
		or.prefetch(ctx, i+1)
		plain, err := or.chunk(ctx, e.Chunk)
		if err != nil {
			return err
		}
		lo, hi := max(e.Off, off), min(e.Off+e.Len, end)
		c := uint64(e.ChunkOff) + (lo - e.Off)
		if err := fn(lo, plain[c:c+(hi-lo):c+(hi-lo)]); err != nil {
			return err
		}
	}
	return nil
}

func (or *ObjectReader) chunk(ctx context.Context, idx uint32) ([]byte, error) {
	or.mu.Lock()
	if p, ok := or.cachedLocked(idx); ok {
		or.mu.Unlock()
		return p, nil
	}
	f, ok := or.inflight[idx]
	if !ok {
		f = or.startLocked(ctx, idx)
	}
	or.mu.Unlock()
	<-f.done
	return f.plain, f.err
}

// cachedLocked returns a cached chunk and marks it most recently used.
func (or *ObjectReader) cachedLocked(idx uint32) ([]byte, bool) {
	for i, c := range or.cache {
		if c.idx == idx {
			or.cache = append(append(or.cache[:i:i], or.cache[i+1:]...), c)
			return c.plain, true
		}
	}
	return nil, false
}

// future is a chunk being loaded.
type future struct {
	done  chan struct{}
	plain []byte
	err   error
}

// startLocked loads chunk idx in the background; the result goes to the
// cache and to everyone waiting on the future.
func (or *ObjectReader) startLocked(ctx context.Context, idx uint32) *future {
	if or.inflight == nil {
		or.inflight = map[uint32]*future{}
	}
	f := &future{done: make(chan struct{})}
	or.inflight[idx] = f
	go func() {
		f.plain, f.err = or.load(ctx, idx)
		or.mu.Lock()
		delete(or.inflight, idx)
		if f.err == nil {
			if len(or.cache) >= readerCacheChunks {
				or.cache = or.cache[1:]
			}
			or.cache = append(or.cache, cachedChunk{idx, f.plain})
		}
		or.mu.Unlock()
		close(f.done)
	}()
	return f
}

// prefetch starts loading the chunks of the extents after extent i, so
// that reading, checking and decoding overlap with the caller's use of the
// data (a restore writing memory into a process).
func (or *ObjectReader) prefetch(ctx context.Context, i int) {
	or.mu.Lock()
	defer or.mu.Unlock()
	started := len(or.inflight)
	for k := i; k < len(or.exts) && started < readAhead; k++ {
		idx := or.exts[k].Chunk
		if _, ok := or.inflight[idx]; ok {
			continue
		}
		cached := false
		for _, c := range or.cache {
			if c.idx == idx {
				cached = true
				break
			}
		}
		if !cached {
			or.startLocked(ctx, idx)
			started++
		}
	}
}

func (or *ObjectReader) load(ctx context.Context, idx uint32) ([]byte, error) {
	ref := or.m.Chunks[idx]
	id, err := ParseID(ref.ID)
	if err != nil {
		return nil, &CorruptError{Checkpoint: or.m.ID(), Name: or.m.Ref(), Object: or.name, Reason: err.Error()}
	}
	plain, err := or.r.loadChunk(ctx, id)
	if err == nil && len(plain) != int(ref.Len) {
		err = fmt.Errorf("chunk holds %d bytes, manifest says %d", len(plain), ref.Len)
	}
	if err != nil {
		return nil, chunkError(or.m, or.name, id, err)
	}
	return plain, nil
}

// ReadAll reads a whole (dense) object into memory. Use it for small
// objects; stream large ones with ReadAt.
func (or *ObjectReader) ReadAll(ctx context.Context) ([]byte, error) {
	b := make([]byte, or.size)
	if _, err := or.ReadAt(ctx, b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// Verify re-hashes every chunk of m. It returns nil, or an error joining one
// *CorruptError per damaged chunk with the objects that use it. progress, if
// not nil, is called with the plain bytes of each chunk checked.
func (r *Repository) Verify(ctx context.Context, m *Manifest, progress func(int64)) error {
	users := map[uint32][]string{}
	for _, o := range m.Objects {
		for _, e := range o.Extents {
			if u := users[e.Chunk]; len(u) == 0 || u[len(u)-1] != o.Name {
				users[e.Chunk] = append(u, o.Name)
			}
		}
		if o.Blocks != nil {
			for _, e := range o.Blocks.Extents {
				if u := users[e.Chunk]; len(u) == 0 || u[len(u)-1] != o.Name+" (block table)" {
					users[e.Chunk] = append(u, o.Name+" (block table)")
				}
			}
		}
	}
	type result struct {
		idx uint32
		err error
	}
	jobs := make(chan uint32)
	results := make(chan result)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0)+1; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := range jobs {
				ref := m.Chunks[idx]
				id, err := ParseID(ref.ID)
				var plain []byte
				if err == nil {
					plain, err = r.loadChunk(ctx, id)
				}
				if err == nil && len(plain) != int(ref.Len) {
					err = fmt.Errorf("chunk holds %d bytes, manifest says %d", len(plain), ref.Len)
				}
				if err == nil && progress != nil {
					progress(int64(len(plain)))
				}
				results <- result{idx, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range m.Chunks {
			select {
			case jobs <- uint32(i):
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	var errs []error
	for res := range results {
		if res.err == nil {
			continue
		}
		id, _ := ParseID(m.Chunks[res.idx].ID)
		obj := ""
		if u := users[res.idx]; len(u) > 0 {
			obj = u[0]
			if len(u) > 1 {
				obj = fmt.Sprintf("%s (and %d more)", u[0], len(u)-1)
			}
		}
		errs = append(errs, chunkError(m, obj, id, res.err))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return joinErrs(errs)
}

// joinErrs joins errors so that errors.As finds the first *CorruptError.
func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return &multiError{errs}
}

type multiError struct{ errs []error }

func (e *multiError) Error() string {
	s := e.errs[0].Error()
	for _, x := range e.errs[1:] {
		s += "\n" + x.Error()
	}
	return s
}

func (e *multiError) Unwrap() []error { return e.errs }
