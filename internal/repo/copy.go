package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ckpt/ckpt/internal/backend"
)

// CopyStats counts what Copy transferred.
type CopyStats struct {
	Chunks       int   // chunks the checkpoint references
	Copied       int   // chunks sent (the destination lacked them)
	CopiedBytes  int64 // their stored size
	AlreadyThere bool  // the destination had the checkpoint already
}

// sameAddressing reports whether two repositories address chunks alike
// (both plain, or keyed with the same key), so blobs can move unchanged.
func sameAddressing(a, b *Repository) bool {
	if a.keys == nil || b.keys == nil {
		return a.keys == nil && b.keys == nil
	}
	return bytes.Equal(a.keys.id[:], b.keys.id[:]) && bytes.Equal(a.keys.aead[:], b.keys.aead[:])
}

// CopyTo copies checkpoint m into dst, sending only the chunks dst lacks.
// Between repositories with the same addressing the blobs move unchanged and
// the checkpoint keeps its ID; otherwise every chunk is decoded, checked and
// re-sealed for dst, and the checkpoint gets a new ID there (same name,
// sequence and time). Chunks are checked against their address either way.
func (r *Repository) CopyTo(ctx context.Context, m *Manifest, dst *Repository, progress func(int64)) (*Manifest, CopyStats, error) {
	st := CopyStats{Chunks: len(m.Chunks)}
	same := sameAddressing(r, dst)
	if same {
		if got, err := dst.Load(ctx, m.ID()); err == nil {
			st.AlreadyThere = true
			return got, st, nil
		}
	}
	unlock, err := dst.be.Lock(ctx, repoLock, false) // gc must not run beside the copy
	if err != nil {
		return nil, st, fmt.Errorf("waiting for gc on %s: %w", dst.be.Location(), err)
	}
	defer unlock.Unlock()

	out := *m
	out.Chunks = make([]ChunkRef, len(m.Chunks))
	var copied atomic.Int64
	var copiedBytes atomic.Int64
	jobs := make(chan int)
	errs := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < max(4, runtime.GOMAXPROCS(0)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				ref, n, err := r.copyChunk(ctx, m, i, dst, same)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					cancel()
					continue
				}
				out.Chunks[i] = ref
				if n > 0 {
					copied.Add(1)
					copiedBytes.Add(n)
				}
				if progress != nil {
					progress(int64(m.Chunks[i].Len))
				}
			}
		}()
	}
	for i := range m.Chunks {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, st, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}
	st.Copied, st.CopiedBytes = int(copied.Load()), copiedBytes.Load()
	if err := dst.be.Sync(ctx); err != nil {
		return nil, st, fmt.Errorf("making chunks durable on %s: %w", dst.be.Location(), err)
	}
	// Same name, sequence and time: the copy is the same checkpoint.
	out.id = ""
	id, blob, err := dst.encodeManifest(&out)
	if err != nil {
		return nil, st, err
	}
	if err := dst.be.Save(ctx, backend.Handle{Kind: backend.Manifest, Name: id.String()}, blob); err != nil {
		return nil, st, err
	}
	if err := dst.be.Sync(ctx); err != nil {
		return nil, st, err
	}
	out.id = id.String()
	return &out, st, nil
}

// copyChunk moves chunk i of m to dst unless dst has it; it returns the
// chunk's reference in dst and the bytes sent (0 when already there).
func (r *Repository) copyChunk(ctx context.Context, m *Manifest, i int, dst *Repository, same bool) (ChunkRef, int64, error) {
	ref := m.Chunks[i]
	id, err := ParseID(ref.ID)
	if err != nil {
		return ChunkRef{}, 0, &CorruptError{Checkpoint: m.ID(), Name: m.Ref(), Reason: err.Error()}
	}
	h := backend.Handle{Kind: backend.Chunk, Name: ref.ID}
	if same {
		if dst.hasChunk(ctx, id) {
			return ref, 0, nil
		}
		blob, err := r.be.Load(ctx, h)
		if err == nil {
			_, _, err = r.decodeChunk(id, blob) // never spread damage
		}
		if err != nil {
			if errors.Is(err, backend.ErrNotExist) {
				err = errChunkMissing
			}
			return ChunkRef{}, 0, chunkError(m, "", id, err)
		}
		if err := dst.be.Save(ctx, h, blob); err != nil {
			return ChunkRef{}, 0, err
		}
		dst.known.Store(id, struct{}{})
		return ref, int64(len(blob)), nil
	}
	plain, err := r.loadChunk(ctx, id)
	if err != nil {
		return ChunkRef{}, 0, chunkError(m, "", id, err)
	}
	nid := dst.hashID(plain)
	nref := ChunkRef{ID: nid.String(), Len: ref.Len}
	if dst.hasChunk(ctx, nid) {
		return nref, 0, nil
	}
	blob, _ := dst.encodeChunk(nid, plain, CodecAuto, nil, nil)
	if err := dst.be.Save(ctx, backend.Handle{Kind: backend.Chunk, Name: nid.String()}, blob); err != nil {
		return ChunkRef{}, 0, err
	}
	dst.known.Store(nid, struct{}{})
	return nref, int64(len(blob)), nil
}
