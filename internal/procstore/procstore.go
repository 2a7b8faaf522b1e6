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
}

// NewPageWriter returns a PageWriter over w.
func NewPageWriter(w *repo.Writer) *PageWriter {
	return &PageWriter{w: w, objs: map[int]*repo.ObjectWriter{}}
}

// WritePages implements image.PageWriter.
func (p *PageWriter) WritePages(pid int, addr uint64, b []byte) error {
	p.mu.Lock()
	ow, ok := p.objs[pid]
	if !ok {
		var err error
		ow, err = p.w.Create(MemObject(pid), "memory", map[string]string{"pid": strconv.Itoa(pid)})
		if err != nil {
			p.mu.Unlock()
			return err
		}
		p.objs[pid] = ow
	}
	p.mu.Unlock()
	if err := ow.WriteAt(b, addr); err != nil {
		return fmt.Errorf("saving memory of %d at %#x: %w", pid, addr, err)
	}
	if p.Progress != nil {
		p.Progress(int64(len(b)))
	}
	return nil
}

// Finish closes the memory objects and stores the tree metadata.
func (p *PageWriter) Finish(tree *image.Tree) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, ow := range p.objs {
		if err := ow.Close(); err != nil {
			return fmt.Errorf("saving memory of %d: %w", pid, err)
		}
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
