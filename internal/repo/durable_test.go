package repo

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/vfs"
)

// failRename fails the rename into place of the chunks it names, once.
type failRename struct {
	vfs.FS
	fail map[string]bool
}

func (f failRename) Rename(oldname, newname string) error {
	if f.fail[filepath.Base(newname)] {
		delete(f.fail, filepath.Base(newname))
		return errors.New("injected rename failure")
	}
	return f.FS.Rename(oldname, newname)
}

// TestChunkNotDurableIsNotReused: a chunk whose background fsync and
// rename fail makes its checkpoint's commit fail, and a later checkpoint of
// the same process with the same bytes stores the chunk again instead of
// referring to the missing one (the process's cache of stored chunks
// forgets it).
func TestChunkNotDurableIsNotReused(t *testing.T) {
	ctx := context.Background()
	fsys := failRename{FS: vfs.NewCrashableMem(), fail: map[string]bool{}}
	be, err := backend.CreateLocal(fsys, "/r")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, be, InitOptions{ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	data := randBytes(9, 64<<10)
	fsys.fail[r.hashID(data).String()] = true
	write := func() (*Manifest, error) {
		w, err := r.NewWriter(ctx, WriterOptions{Name: "n", Kind: KindLibrary})
		if err != nil {
			return nil, err
		}
		ow, err := w.Create("obj", "data", nil)
		if err != nil {
			return nil, err
		}
		if err := ow.WriteAt(data, 0); err != nil {
			return nil, err
		}
		return w.Commit(ctx)
	}
	if _, err := write(); err == nil {
		t.Fatal("commit succeeded although its chunk could not be made durable")
	}
	m, err := write()
	if err != nil {
		t.Fatalf("second checkpoint: %v", err)
	}
	or, err := r.OpenObject(m, "obj")
	if err != nil {
		t.Fatal(err)
	}
	got, err := or.ReadAll(ctx)
	if err != nil {
		t.Fatalf("reading the second checkpoint: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("second checkpoint reads back different bytes")
	}
}
