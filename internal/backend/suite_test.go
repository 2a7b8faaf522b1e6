package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/vfs"
)

// testBackend is the conformance suite every Backend passes.
func testBackend(t *testing.T, be Backend) {
	ctx := context.Background()
	h := Handle{Kind: Chunk, Name: "ab" + "cdef0123"}
	if _, err := be.Load(ctx, h); !errors.Is(err, ErrNotExist) {
		t.Fatalf("load of a missing blob: %v", err)
	}
	if _, err := be.Stat(ctx, h); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat of a missing blob: %v", err)
	}
	data := []byte("some chunk bytes")
	if err := be.Save(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, Handle{Kind: Manifest, Name: "m1"}, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := be.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := be.Load(ctx, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("load: %q %v", got, err)
	}
	in, err := be.Stat(ctx, h)
	if err != nil || in.Size != int64(len(data)) {
		t.Fatalf("stat: %+v %v", in, err)
	}
	var names []string
	if err := be.List(ctx, Chunk, func(i Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if len(names) != 1 || names[0] != h.Name {
		t.Fatalf("list chunks: %v", names)
	}
	stop := errors.New("stop")
	if err := be.List(ctx, Manifest, func(Info) error { return stop }); err != stop {
		t.Fatalf("list must return the callback's error, got %v", err)
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := be.Remove(ctx, h); err != nil {
		t.Fatalf("removing a missing blob: %v", err)
	}
	if err := be.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Load(ctx, h); !errors.Is(err, ErrNotExist) {
		t.Fatalf("load after remove: %v", err)
	}
	// Locks: shared locks coexist; exclusive excludes.
	a, err := be.Lock(ctx, "l", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := be.Lock(ctx, "l", false)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := be.Lock(short, "l", true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock beside shared ones: %v", err)
	}
	a.Unlock()
	b.Unlock()
	x, err := be.Lock(ctx, "l", true)
	if err != nil {
		t.Fatal(err)
	}
	x.Unlock()
}

func TestMem(t *testing.T) { testBackend(t, NewMem()) }

func TestLocalOS(t *testing.T) {
	be, err := CreateLocal(vfs.OS, filepath.Join(t.TempDir(), "r"))
	if err != nil {
		t.Fatal(err)
	}
	testBackend(t, be)
}

func TestLocalMemFS(t *testing.T) {
	be, err := CreateLocal(vfs.NewCrashableMem(), "/r")
	if err != nil {
		t.Fatal(err)
	}
	testBackend(t, be)
}

func TestLocalRejectsEscapingNames(t *testing.T) {
	be, _ := CreateLocal(vfs.NewCrashableMem(), "/r")
	for _, n := range []string{"../x", "a/b", "", ".hidden", "ab"} {
		if err := be.Save(context.Background(), Handle{Kind: Chunk, Name: n}, nil); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

// TestLocalSaveInvisibleUntilSync checks the contract the commit protocol
// relies on: a crash before Sync leaves no trace of a Save.
func TestLocalSaveInvisibleUntilSync(t *testing.T) {
	fsys := vfs.NewCrashableMem()
	be, _ := CreateLocal(fsys, "/r")
	ctx := context.Background()
	h := Handle{Kind: Manifest, Name: "m"}
	be.Save(ctx, h, []byte("x"))
	fsys.Crash()
	be2, _ := OpenLocal(fsys, "/r")
	if _, err := be2.Load(ctx, h); !errors.Is(err, ErrNotExist) {
		t.Fatalf("unsynced save survived a crash: %v", err)
	}
	be2.Save(ctx, h, []byte("y"))
	be2.Sync(ctx)
	fsys.Crash()
	if got, err := be2.Load(ctx, h); err != nil || string(got) != "y" {
		t.Fatalf("synced save lost: %q %v", got, err)
	}
}

// TestLocalChunksDurableAtSync: chunks are made durable in the background,
// but Sync still waits for every one and reports their failures; CleanTmp
// removes the leftovers of writers that died (in tmp/ and .tmp- chunk
// files) and nothing else.
func TestLocalChunksDurableAtSync(t *testing.T) {
	ctx := context.Background()
	fsys := vfs.NewCrashableMem()
	be, err := CreateLocal(fsys, "/r")
	if err != nil {
		t.Fatal(err)
	}
	var hs []Handle
	for i := 0; i < 50; i++ {
		h := Handle{Kind: Chunk, Name: fmt.Sprintf("%02x%062x", i, i)}
		if err := be.Save(ctx, h, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if err := be.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fsys.Crash()
	for _, h := range hs {
		if b, err := be.Load(ctx, h); err != nil || len(b) != 1 {
			t.Fatalf("%s after Sync and a crash: %q %v", h, b, err)
		}
	}

	// The file system fails from the next operation on: Sync says so.
	fsys.SetCrashAfter(3)
	for i := 0; i < 5; i++ {
		_ = be.Save(ctx, Handle{Kind: Chunk, Name: fmt.Sprintf("aa%062x", i)}, []byte("x"))
	}
	if err := be.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded although the chunks could not be made durable")
	}
	fsys.Crash()

	be, err = OpenLocal(fsys, "/r")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"/r/tmp/0123", "/r/chunks/ab/" + tmpPrefix + "0123"} {
		w, err := fsys.Create(f, FileMode)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	n, err := be.CleanTmp(ctx)
	if err != nil || n != 2 {
		t.Fatalf("CleanTmp removed %d files (%v), want the 2 leftovers", n, err)
	}
	for _, h := range hs {
		if _, err := be.Stat(ctx, h); err != nil {
			t.Fatalf("CleanTmp removed chunk %s: %v", h, err)
		}
	}
}

// failRename fails the rename into place of the chunks it names.
type failRename struct {
	vfs.FS
	fail map[string]bool
}

func (f failRename) Rename(oldname, newname string) error {
	if f.fail[filepath.Base(newname)] {
		return errors.New("injected rename failure")
	}
	return f.FS.Rename(oldname, newname)
}

// TestLocalSyncGroups: two writers share a local backend; the chunk of one
// fails to be made durable in the background. That writer's Sync reports
// it, the other's does not (and is not robbed of the report by the other
// Sync coming first).
func TestLocalSyncGroups(t *testing.T) {
	ctx := context.Background()
	bad := fmt.Sprintf("bb%062x", 1)
	fsys := failRename{FS: vfs.NewCrashableMem(), fail: map[string]bool{bad: true}}
	be, err := CreateLocal(fsys, "/r")
	if err != nil {
		t.Fatal(err)
	}
	a, b := WithSyncGroup(ctx, new(byte)), WithSyncGroup(ctx, new(byte))
	if err := be.Save(a, Handle{Kind: Chunk, Name: bad}, []byte("a")); err != nil {
		t.Fatal(err)
	}
	good := Handle{Kind: Chunk, Name: fmt.Sprintf("cc%062x", 2)}
	if err := be.Save(b, good, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := be.Sync(b); err != nil {
		t.Fatalf("Sync of the writer whose chunk is durable: %v", err)
	}
	if err := be.Sync(a); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Sync of the writer whose chunk failed: %v", err)
	}
	if _, err := be.Stat(ctx, Handle{Kind: Chunk, Name: bad}); !errors.Is(err, ErrNotExist) {
		t.Fatalf("failed chunk: %v", err)
	}
	if _, err := be.Stat(ctx, good); err != nil {
		t.Fatal(err)
	}
}
