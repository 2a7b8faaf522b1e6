package levels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/vfs"
)

// CopyStats counts what CopyCheckpoint sent.
type CopyStats struct {
	Chunks       int
	Sent         int
	SentBytes    int64
	AlreadyThere bool
}

// copyWorkers bounds the blobs in flight (and so the memory) of a copy.
const copyWorkers = 8

// ErrOtherRepository: the destination holds a different repository.
var ErrOtherRepository = errors.New("destination holds another repository")

// CopyCheckpoint copies checkpoint id (its manifest blob and the chunk
// blobs chunks) from src to dst unchanged, sending only the chunks dst
// lacks, under the commit protocol: config, chunks, Sync, manifest, Sync.
// The checkpoint exists at dst only when it is complete there.
func CopyCheckpoint(ctx context.Context, src, dst backend.Backend, id string, chunks []string) (CopyStats, error) {
	st := CopyStats{Chunks: len(chunks)}
	mh := backend.Handle{Kind: backend.Manifest, Name: id}
	if _, err := dst.Stat(ctx, mh); err == nil {
		st.AlreadyThere = true
		return st, nil
	}
	if err := copyConfig(ctx, src, dst); err != nil {
		return st, err
	}
	// Chunks sent before the manifest are unreferenced until it lands:
	// hold the repository lock shared, so gc on dst does not take them.
	unlock, err := dst.Lock(ctx, repo.RepositoryLock, false)
	if err != nil {
		return st, fmt.Errorf("waiting for gc on %s: %w", dst.Location(), err)
	}
	defer unlock.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sent, sentBytes atomic.Int64
	var firstErr error
	var once sync.Once
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	jobs := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < copyWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				h := backend.Handle{Kind: backend.Chunk, Name: c}
				if _, err := dst.Stat(ctx, h); err == nil {
					continue
				} else if !errors.Is(err, backend.ErrNotExist) {
					fail(fmt.Errorf("checking chunk %s on %s: %w", short(c), dst.Location(), err))
					return
				}
				b, err := src.Load(ctx, h)
				if err != nil {
					fail(fmt.Errorf("reading chunk %s from %s: %w", short(c), src.Location(), err))
					return
				}
				if err := dst.Save(ctx, h, b); err != nil {
					fail(fmt.Errorf("sending chunk %s to %s: %w", short(c), dst.Location(), err))
					return
				}
				sent.Add(1)
				sentBytes.Add(int64(len(b)))
			}
		}()
	}
feed:
	for _, c := range chunks {
		select {
		case jobs <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return st, firstErr
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	st.Sent, st.SentBytes = int(sent.Load()), sentBytes.Load()
	if err := dst.Sync(ctx); err != nil {
		return st, fmt.Errorf("making chunks durable on %s: %w", dst.Location(), err)
	}
	mb, err := src.Load(ctx, mh)
	if err != nil {
		return st, fmt.Errorf("reading manifest %s: %w", short(id), err)
	}
	if err := dst.Save(ctx, mh, mb); err != nil {
		return st, fmt.Errorf("sending manifest %s to %s: %w", short(id), dst.Location(), err)
	}
	if err := dst.Sync(ctx); err != nil {
		return st, fmt.Errorf("committing %s on %s: %w", short(id), dst.Location(), err)
	}
	st.SentBytes += int64(len(mb))
	return st, nil
}

// copyConfig gives dst the repository config of src, refusing when dst
// holds another repository's.
func copyConfig(ctx context.Context, src, dst backend.Backend) error {
	h := backend.Handle{Kind: backend.Config}
	cfg, err := src.Load(ctx, h)
	if err != nil {
		return fmt.Errorf("reading repository config from %s: %w", src.Location(), err)
	}
	return ensureConfig(ctx, dst, cfg)
}

func ensureConfig(ctx context.Context, dst backend.Backend, cfg []byte) error {
	h := backend.Handle{Kind: backend.Config}
	have, err := dst.Load(ctx, h)
	switch {
	case err == nil:
		if !bytes.Equal(have, cfg) {
			return fmt.Errorf("%s: %w", dst.Location(), ErrOtherRepository)
		}
		return nil
	case !errors.Is(err, backend.ErrNotExist):
		return err
	}
	if err := dst.Save(ctx, h, cfg); err != nil {
		return err
	}
	return dst.Sync(ctx)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// OpenDurable opens the backend at a durable location: a directory or an
// s3: location. create makes a missing one.
func OpenDurable(ctx context.Context, loc string, create bool) (backend.Backend, error) {
	if strings.HasPrefix(loc, "s3:") {
		cfg, err := backend.ParseS3(loc)
		if err != nil {
			return nil, err
		}
		return backend.OpenS3(ctx, cfg, create)
	}
	be, err := backend.OpenLocal(vfs.OS, loc)
	if errors.Is(err, backend.ErrNotExist) && create {
		return backend.CreateLocal(vfs.OS, loc)
	}
	return be, err
}
