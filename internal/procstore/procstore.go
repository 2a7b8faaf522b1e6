// Package procstore keeps process images in a ckpt repository: the tree
// metadata as the object "tree" and each process's memory as the sparse
// object "mem/<pid>", addressed by virtual address (docs/FORMAT.md). It
// adapts repo writers and readers to the image.PageWriter and
// image.PageReader boundary of the dumper and restorer.
package procstore

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/repo"
)

// TreeObject is the name of the metadata object.
const TreeObject = "tree"

// MemObject names the memory object of pid.
func MemObject(pid int) string { return "mem/" + strconv.Itoa(pid) }

// PageWriter streams dumped pages into a repository writer.
type PageWriter struct {
	w    *repo.Writer
	mu   sync.Mutex
	objs map[int]*repo.ObjectWriter
	// Progress, if set, is called with the bytes of each write.
	Progress func(int64)

	read, reused atomic.Uint64
}

// Counts returns the memory handed to the writer (read from the process)
// and the memory declared unchanged since the parent checkpoint.
func (p *PageWriter) Counts() (read, reused uint64) { return p.read.Load(), p.reused.Load() }

// NewPageWriter returns a PageWriter over w.
func NewPageWriter(w *repo.Writer) *PageWriter {
	return &PageWriter{w: w, objs: map[int]*repo.ObjectWriter{}}
}

func (p *PageWriter) object(pid int) (*repo.ObjectWriter, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ow, ok := p.objs[pid]
	if !ok {
		var err error
		ow, err = p.w.Create(MemObject(pid), "memory", map[string]string{"pid": strconv.Itoa(pid)})
		if err != nil {
			return nil, err
		}
		p.objs[pid] = ow
	}
	return ow, nil
}

// WritePages implements image.PageWriter.
func (p *PageWriter) WritePages(pid int, addr uint64, b []byte) error {
	ow, err := p.object(pid)
	if err != nil {
		return err
	}
	if err := ow.WriteAt(b, addr); err != nil {
		return fmt.Errorf("saving memory of %d at %#x: %w", pid, addr, err)
	}
	p.read.Add(uint64(len(b)))
	if p.Progress != nil {
		p.Progress(int64(len(b)))
	}
	return nil
}

// FillPages saves pid's memory [addr, addr+n) that read puts straight
// into the repository writer's chunk buffers (dump.PageFiller): read is
// called with consecutive pieces of the range and must fill all of b. It
// may be called later, by the writer's workers, until WaitFills(pid)
// returns: several pieces are then read at once, each on the CPU that
// hashes and stores it.
func (p *PageWriter) FillPages(pid int, addr uint64, n int, read func(addr uint64, b []byte) error) error {
	ow, err := p.object(pid)
	if err != nil {
		return err
	}
	if err := ow.WriteFrom(addr, n, read); err != nil {
		return err
	}
	p.read.Add(uint64(n))
	if p.Progress != nil {
		p.Progress(int64(n))
	}
	return nil
}

// WaitFills returns once every read passed to FillPages for pid has been
// called, with the first error of the writer.
func (p *PageWriter) WaitFills(pid int) error {
	p.mu.Lock()
	ow := p.objs[pid]
	p.mu.Unlock()
	if ow == nil {
		return nil
	}
	return ow.WaitFills()
}

// ReusePages declares pid's memory [addr, addr+n) unchanged since the
// writer's parent checkpoint (dump.ParentReuser): the pages are not read
// again.
func (p *PageWriter) ReusePages(pid int, addr, n uint64) error {
	ow, err := p.object(pid)
	if err != nil {
		return err
	}
	if err := ow.ReuseParent(addr, n); err != nil {
		return fmt.Errorf("memory of %d at %#x: %w", pid, addr, err)
	}
	p.reused.Add(n)
	return nil
}

// CloseObjects closes the memory objects without storing a tree: a
// pre-copy checkpoint, which only serves as the parent of the real one.
func (p *PageWriter) CloseObjects() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, ow := range p.objs {
		if err := ow.Close(); err != nil {
			return fmt.Errorf("saving memory of %d: %w", pid, err)
		}
	}
	return nil
}

// Finish closes the memory objects and stores the tree metadata.
func (p *PageWriter) Finish(tree *image.Tree) error {
	if err := p.CloseObjects(); err != nil {
		return err
	}
	b, err := image.Encode(tree)
	if err != nil {
		return err
	}
	ow, err := p.w.Create(TreeObject, "process-tree", nil)
	if err != nil {
		return err
	}
	if _, err := ow.Write(b); err != nil {
		return err
	}
	return ow.Close()
}

// ReadTree loads the metadata of a process checkpoint.
func ReadTree(ctx context.Context, r *repo.Repository, m *repo.Manifest) (*image.Tree, error) {
	if m.Kind != repo.KindProcess {
		return nil, fmt.Errorf("checkpoint %s (%s) is a %s checkpoint, not a process image", m.ID()[:12], m.Ref(), m.Kind)
	}
	or, err := r.OpenObject(m, TreeObject)
	if err != nil {
		return nil, err
	}
	b, err := or.ReadAll(ctx)
	if err != nil {
		return nil, err
	}
	t, err := image.Decode(b)
	if err != nil {
		return nil, &repo.CorruptError{Checkpoint: m.ID(), Name: m.Ref(), Object: TreeObject, Reason: err.Error()}
	}
	return t, nil
}

// PageReader serves a checkpoint's memory to the restorer.
type PageReader struct {
	ctx context.Context
	r   *repo.Repository
	m   *repo.Manifest
	mu  sync.Mutex
	rd  map[int]*repo.ObjectReader
	// Progress, if set, is called with the bytes of each read.
	Progress func(int64)
}

// NewPageReader returns a PageReader for m.
func NewPageReader(ctx context.Context, r *repo.Repository, m *repo.Manifest) *PageReader {
	return &PageReader{ctx: ctx, r: r, m: m, rd: map[int]*repo.ObjectReader{}}
}

func (p *PageReader) reader(pid int) (*repo.ObjectReader, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if or, ok := p.rd[pid]; ok {
		return or, nil
	}
	or, err := p.r.OpenObject(p.m, MemObject(pid))
	if err != nil {
		return nil, err
	}
	p.rd[pid] = or
	return or, nil
}

// Ranges implements image.PageReader. A process with no saved memory has
// no object and no ranges.
func (p *PageReader) Ranges(pid int) ([]image.Range, error) {
	if p.m.Object(MemObject(pid)) == nil {
		return nil, nil
	}
	or, err := p.reader(pid)
	if err != nil {
		return nil, err
	}
	var out []image.Range
	for _, r := range or.Ranges() {
		out = append(out, image.Range{Addr: r.Off, Len: r.Len})
	}
	return out, nil
}

// ReadPages implements image.PageReader.
func (p *PageReader) ReadPages(pid int, addr uint64, b []byte) error {
	or, err := p.reader(pid)
	if err != nil {
		return err
	}
	if _, err := or.ReadAt(p.ctx, b, addr); err != nil && err != io.EOF {
		return err
	}
	if p.Progress != nil {
		p.Progress(int64(len(b)))
	}
	return nil
}

// PageSegments calls fn, in address order, with the saved memory of pid in
// [addr, addr+n) as slices of verified chunks (no copy; holes skipped). fn
// may keep b but must not modify it. The restorer uses it to write memory
// straight from the chunks.
func (p *PageReader) PageSegments(pid int, addr, n uint64, fn func(addr uint64, b []byte) error) error {
	or, err := p.reader(pid)
	if err != nil {
		return err
	}
	return or.Segments(p.ctx, addr, n, func(a uint64, b []byte) error {
		if err := fn(a, b); err != nil {
			return err
		}
		if p.Progress != nil {
			p.Progress(int64(len(b)))
		}
		return nil
	})
}

// ParallelPageSegments calls fn with all the saved memory of pid, one
// piece per extent, from up to workers goroutines at once and in no
// particular order; b is valid only until fn returns. Each chunk is read
// and verified by the worker that then hands out its pages, so a restore
// reads, checks and writes memory on every CPU.
func (p *PageReader) ParallelPageSegments(pid, workers int, fn func(addr uint64, b []byte) error) error {
	if p.m.Object(MemObject(pid)) == nil {
		return nil
	}
	or, err := p.reader(pid)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	return or.ParallelSegments(p.ctx, workers, func(a uint64, b []byte) error {
		if err := fn(a, b); err != nil {
			return err
		}
		if p.Progress != nil {
			mu.Lock() // Progress need not be safe for concurrent use
			p.Progress(int64(len(b)))
			mu.Unlock()
		}
		return nil
	})
}
