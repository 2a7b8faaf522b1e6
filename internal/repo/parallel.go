package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ckpt/ckpt/internal/backend"
)

// ParallelSegments calls fn with all of the object's data, one call per
// extent, from up to workers goroutines at once. Each worker loads and
// verifies one chunk at a time into buffers of its own and hands every
// extent stored in that chunk to fn, so a chunk is read once however its
// extents interleave with other chunks' (incremental images), and it is
// hashed and used on the same CPU while it is still in its cache.
//
// Unlike Segments, fn runs concurrently, in no particular order, and b is
// valid only until fn returns (the buffer holds the worker's next chunk
// after that). Holes are skipped. The first error stops the workers and is
// returned; fn is not called after it.
func (or *ObjectReader) ParallelSegments(ctx context.Context, workers int, fn func(off uint64, b []byte) error) error {
	type group struct {
		idx  uint32
		exts []Extent
	}
	var groups []group
	pos := map[uint32]int{}
	for _, e := range or.exts {
		if e.Len == 0 {
			continue
		}
		k, ok := pos[e.Chunk]
		if !ok {
			k = len(groups)
			pos[e.Chunk] = k
			groups = append(groups, group{idx: e.Chunk})
		}
		groups[k].exts = append(groups[k].exts, e)
	}
	workers = max(1, min(workers, len(groups)))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		done     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc loadScratch
			for {
				k := int(next.Add(1) - 1)
				if k >= len(groups) || ctx.Err() != nil {
					return
				}
				g := groups[k]
				plain, err := or.loadInto(ctx, g.idx, &sc)
				if err != nil {
					fail(err)
					return
				}
				for _, e := range g.exts {
					if uint64(e.ChunkOff)+e.Len > uint64(len(plain)) {
						fail(&CorruptError{Checkpoint: or.m.ID(), Name: or.m.Ref(), Object: or.name,
							Reason: fmt.Sprintf("extent at %#x: bytes %d-%d of a %d-byte chunk", e.Off, e.ChunkOff, uint64(e.ChunkOff)+e.Len, len(plain))})
						return
					}
					if err := fn(e.Off, plain[e.ChunkOff:uint64(e.ChunkOff)+e.Len:uint64(e.ChunkOff)+e.Len]); err != nil {
						fail(err)
						return
					}
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && done.Load() < int64(len(groups)) {
		// The caller's context ended before every chunk was done.
		firstErr = parent.Err()
	}
	return firstErr
}

// loadScratch is one reader worker's reused buffers.
type loadScratch struct {
	blob  []byte // raw chunk file, its payload 64-byte aligned
	plain []byte // decompressed bytes
}

// loadInto reads, checks and decodes chunk idx using sc's buffers; the
// result is valid until the next call with sc.
func (or *ObjectReader) loadInto(ctx context.Context, idx uint32, sc *loadScratch) ([]byte, error) {
	ref := or.m.Chunks[idx]
	id, err := ParseID(ref.ID)
	if err != nil {
		return nil, &CorruptError{Checkpoint: or.m.ID(), Name: or.m.Ref(), Object: or.name, Reason: err.Error()}
	}
	bl, ok := or.r.be.(backend.BufLoader)
	if !ok {
		return or.load(ctx, idx)
	}
	// Room for the header, the payload and an encrypted chunk's nonce and
	// tag; a compressed chunk is smaller.
	// The payload starts bufAlign bytes into the allocation (page-aligned
	// for one this large), as in the writer's chunk buffers: copying out
	// of data 12 bytes into a page runs much slower (4 KiB aliasing).
	if need := int(ref.Len) + 128; cap(sc.blob) < need {
		sc.blob = make([]byte, bufAlign+need)[bufAlign-chunkHeaderLen:]
	}
	blob, err := bl.LoadBuf(ctx, backend.Handle{Kind: backend.Chunk, Name: id.String()}, sc.blob)
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			err = errChunkMissing
		}
		return nil, chunkError(or.m, or.name, id, err)
	}
	if cap(blob) > cap(sc.blob) {
		sc.blob = blob[:0]
	}
	plain, codec, err := or.r.decodeChunkInto(id, blob, sc.plain)
	if err == nil && len(plain) != int(ref.Len) {
		err = fmt.Errorf("chunk holds %d bytes, manifest says %d", len(plain), ref.Len)
	}
	if err != nil {
		return nil, chunkError(or.m, or.name, id, err)
	}
	if codec != CodecNone && cap(plain) > cap(sc.plain) {
		sc.plain = plain[:0]
	}
	return plain, nil
}
