package repo

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"runtime"
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

// initLocalOn creates a repository in directory dir of fsys.
func initLocalOn(t *testing.T, fsys vfs.FS, dir string, chunkSize int) *Repository {
	t.Helper()
	be, err := backend.CreateLocal(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), be, InitOptions{ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestChunkNotDurableIsNotReused: a chunk whose background fsync and
// rename fail makes its checkpoint's commit fail, and a later checkpoint of
// the same process with the same bytes stores the chunk again instead of
// referring to the missing one (the process's cache of stored chunks
// forgets it).
func TestChunkNotDurableIsNotReused(t *testing.T) {
	ctx := context.Background()
	fsys := failRename{FS: vfs.NewCrashableMem(), fail: map[string]bool{}}
	r := initLocalOn(t, fsys, "/r", 64<<10)
	data := randBytes(9, 64<<10)
	fsys.fail[r.hashID(data).String()] = true
	if _, _, err := writeOne(r, data); err == nil {
		t.Fatal("commit succeeded although its chunk could not be made durable")
	}
	m, _, err := writeOne(r, data)
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

// TestReusedChunkMadeDurable: a chunk another writer (here another
// process's backend) renamed into place but whose directory it has not
// fsynced yet is found and reused by a checkpoint; that checkpoint's Sync
// fsyncs the directory, so after a crash the chunk is still there for it.
func TestReusedChunkMadeDurable(t *testing.T) {
	ctx := context.Background()
	fsys := vfs.NewCrashableMem()
	r := initLocalOn(t, fsys, "/r", 64<<10)
	data := randBytes(11, 64<<10)
	id := r.hashID(data)
	other, err := backend.OpenLocal(fsys, "/r")
	if err != nil {
		t.Fatal(err)
	}
	blob, _ := r.encodeChunk(id, data, CodecNone, nil, nil)
	if err := other.Save(ctx, backend.Handle{Kind: backend.Chunk, Name: id.String()}, blob); err != nil {
		t.Fatal(err)
	}
	final := "/r/chunks/" + id.String()[:2] + "/" + id.String()
	for {
		if _, err := fsys.Stat(final); err == nil {
			break
		}
		runtime.Gosched() // the other writer's background rename
	}
	m, st, err := writeOne(r, data)
	if err != nil {
		t.Fatal(err)
	}
	if st.DedupChunks != 1 {
		t.Fatalf("the chunk was not reused: %+v", st)
	}
	fsys.Crash()
	be2, err := backend.OpenLocal(fsys, "/r")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Verify(ctx, m, nil); err != nil {
		t.Fatalf("after a crash the reused chunk is gone: %v", err)
	}
}

// writeOne commits a checkpoint of one object holding data.
func writeOne(r *Repository, data []byte) (*Manifest, WriteStats, error) {
	ctx := context.Background()
	w, err := r.NewWriter(ctx, WriterOptions{Name: "n", Kind: KindLibrary})
	if err != nil {
		return nil, WriteStats{}, err
	}
	ow, err := w.Create("obj", "data", nil)
	if err == nil {
		err = ow.WriteAt(data, 0)
	}
	if err != nil {
		w.Abort()
		return nil, WriteStats{}, err
	}
	m, err := w.Commit(ctx)
	return m, w.Stats(), err
}
