package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
)

func newDirRepo(t *testing.T, key []byte) (*Repository, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := InitDir(context.Background(), dir, InitOptions{Key: key, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

func chunkPath(dir, id string) string { return filepath.Join(dir, "chunks", id[:2], id) }

func TestDamageIsNamed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"flip", func(t *testing.T, p string) { flipByte(t, p, -10) }, ""},
		{"truncate", func(t *testing.T, p string) { os.Truncate(p, 20) }, ""},
		{"delete", func(t *testing.T, p string) { os.Remove(p) }, "missing"},
		{"header", func(t *testing.T, p string) { flipByte(t, p, 0) }, "not a chunk"},
	} {
		for _, key := range [][]byte{nil, []byte("secret key material!")} {
			t.Run(tc.name, func(t *testing.T) {
				r, dir := newDirRepo(t, key)
				m := writeCkpt(t, r, "job", nil, map[string][]byte{"grid": randBytes(9, 200<<10), "other": randBytes(10, 10)})
				victim := m.Chunks[m.Objects[0].Extents[0].Chunk].ID
				tc.damage(t, chunkPath(dir, victim))
				r2, err := OpenDir(ctx, dir, key, false)
				if err != nil {
					t.Fatal(err)
				}
				m2, err := r2.Load(ctx, m.ID())
				if err != nil {
					t.Fatal(err)
				}
				err = r2.Verify(ctx, m2, nil)
				var ce *CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("verify: want CorruptError, got %v", err)
				}
				if ce.Checkpoint != m.ID() || ce.Object != "grid" || ce.Chunk != victim || !strings.Contains(ce.Reason, tc.want) {
					t.Fatalf("verify named %+v", ce)
				}
				or, _ := r2.OpenObject(m2, "grid")
				if _, err := or.ReadAll(ctx); !errors.As(err, &ce) || ce.Object != "grid" {
					t.Fatalf("read: %v", err)
				}
				err = or.ParallelSegments(ctx, 3, func(uint64, []byte) error { return nil })
				if !errors.As(err, &ce) || ce.Object != "grid" || ce.Chunk != victim {
					t.Fatalf("parallel segments: %v", err)
				}
				// The other object is intact.
				if got := readObj(t, r2, m2, "other"); !bytes.Equal(got, randBytes(10, 10)) {
					t.Fatal("intact object damaged")
				}
			})
		}
	}
}

func flipByte(t *testing.T, p string, at int) {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += len(b)
	}
	b[at] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedManifest(t *testing.T) {
	ctx := context.Background()
	r, dir := newDirRepo(t, nil)
	m := writeCkpt(t, r, "job", nil, map[string][]byte{"a": []byte("x")})
	good := writeCkpt(t, r, "job", m, map[string][]byte{"a": []byte("y")})
	p := filepath.Join(dir, "manifests", good.ID())
	flipByte(t, p, -3)
	r2, _ := OpenDir(ctx, dir, nil, false)
	ms, bad, err := r2.List(ctx)
	if err != nil || len(ms) != 1 || len(bad) != 1 || bad[0].ID != good.ID() {
		t.Fatalf("list: %v %d %v", err, len(ms), bad)
	}
	var ce *CorruptError
	if !errors.As(bad[0].Err, &ce) || ce.Checkpoint != good.ID() {
		t.Fatalf("bad manifest error %v", bad[0].Err)
	}
	if _, err := r2.GC(ctx); err == nil || !strings.Contains(err.Error(), good.ID()[:12]) {
		t.Fatalf("gc must refuse while a manifest is damaged: %v", err)
	}
	os.Truncate(p, 5)
	if _, err := r2.Load(ctx, good.ID()); err == nil {
		t.Fatal("truncated manifest loaded") // cached? must not be: it failed before
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	key := []byte("0123456789abcdef-key")
	_, enc := newDirRepo(t, key)
	_, plain := newDirRepo(t, nil)
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "stuff"), []byte("x"), 0o600)
	for _, tc := range []struct {
		dir  string
		key  []byte
		want error
	}{
		{enc, nil, ErrKeyRequired},
		{enc, []byte("another key of 16+"), ErrWrongKey},
		{plain, key, ErrNotEncrypted},
		{empty, nil, ErrNotRepository},
		{filepath.Join(empty, "missing"), nil, ErrNotRepository},
	} {
		_, err := OpenDir(ctx, tc.dir, tc.key, false)
		if !errors.Is(err, tc.want) {
			t.Errorf("open %s: want %v, got %v", tc.dir, tc.want, err)
		}
	}
	if _, err := OpenDir(ctx, enc, key, false); err != nil {
		t.Fatal(err)
	}
	// Newer format.
	cfg := filepath.Join(plain, "config")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte(`"version": 1`), []byte(`"version": 9`), 1), 0o600)
	if _, err := OpenDir(ctx, plain, nil, false); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("newer format: %v", err)
	}
	if _, err := InitDir(ctx, enc, InitOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("init twice: %v", err)
	}
	if _, err := InitDir(ctx, empty, InitOptions{}); err == nil {
		t.Fatal("init in a non-empty directory succeeded")
	}
}

func TestPermissions(t *testing.T) {
	r, dir := newDirRepo(t, nil)
	writeCkpt(t, r, "job", nil, map[string][]byte{"a": randBytes(1, 5000)})
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
}

func TestEncryptedHidesEqualContent(t *testing.T) {
	data := randBytes(5, 100<<10)
	plain := newMemRepo(t, nil)
	a := newMemRepo(t, []byte("key A key A key A"))
	m0 := writeCkpt(t, plain, "j", nil, map[string][]byte{"x": data})
	m1 := writeCkpt(t, a, "j", nil, map[string][]byte{"x": data})
	if m0.Chunks[0].ID == m1.Chunks[0].ID {
		t.Fatal("keyed repository uses unkeyed chunk addresses")
	}
	be := a.Backend().(*backend.Mem)
	blob, _ := be.Load(context.Background(), backend.Handle{Kind: backend.Chunk, Name: m1.Chunks[0].ID})
	if bytes.Contains(blob, data[:64]) {
		t.Fatal("sealed chunk contains plaintext")
	}
}

func TestRetentionAndGC(t *testing.T) {
	ctx := context.Background()
	r, _ := newDirRepo(t, nil)
	var last *Manifest
	for i := 0; i < 5; i++ {
		last = writeCkpt(t, r, "job", last, map[string][]byte{"a": randBytes(uint64(i), 100<<10)})
	}
	writeCkpt(t, r, "other", nil, map[string][]byte{"a": randBytes(99, 10<<10)})
	removed, err := r.Retain(ctx, "job", 2)
	if err != nil || len(removed) != 3 {
		t.Fatalf("retain: %v, removed %d", err, len(removed))
	}
	st, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Removed == 0 || st.Checkpoints != 3 {
		t.Fatalf("gc stats %+v", st)
	}
	ms, _, _ := r.List(ctx)
	for _, m := range ms {
		if err := r.Verify(ctx, m, nil); err != nil {
			t.Fatalf("%s after gc: %v", m.Ref(), err)
		}
	}
	if got := readObj(t, r, last, "a"); !bytes.Equal(got, randBytes(4, 100<<10)) {
		t.Fatal("newest checkpoint changed by gc")
	}
}

func TestGCWaitsForWriter(t *testing.T) {
	ctx := context.Background()
	r, _ := newDirRepo(t, nil)
	w, err := r.NewWriter(ctx, WriterOptions{Name: "job", Kind: KindLibrary})
	if err != nil {
		t.Fatal(err)
	}
	ow, _ := w.Create("a", "bytes", nil)
	data := randBytes(3, 300<<10)
	ow.Write(data)
	ow.Close()
	// The writer's chunks are not referenced by any manifest yet; gc must
	// not run until the writer commits.
	gcCtx, cancel := context.WithTimeout(ctx, 50_000_000)
	defer cancel()
	if _, err := r.GC(gcCtx); !errors.Is(err, backend.ErrLocked) {
		t.Fatalf("gc ran beside a writer: %v", err)
	}
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, r, m, "a"); !bytes.Equal(got, data) {
		t.Fatal("data lost")
	}
}

func TestSparseObject(t *testing.T) {
	r := newMemRepo(t, nil)
	ctx := context.Background()
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess})
	ow, _ := w.Create("mem/1", "memory", nil)
	a, b := randBytes(1, 3*4096), randBytes(2, 5*4096)
	if err := ow.WriteAt(a, 0x7f0000000000); err != nil {
		t.Fatal(err)
	}
	if err := ow.WriteAt(b, 0x7f0000100000); err != nil {
		t.Fatal(err)
	}
	if err := ow.WriteAt(a, 0x10); err == nil {
		t.Fatal("descending write accepted")
	}
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	or, _ := r.OpenObject(m, "mem/1")
	rs := or.Ranges()
	if len(rs) != 2 || rs[0] != (Range{0x7f0000000000, 3 * 4096}) || rs[1] != (Range{0x7f0000100000, 5 * 4096}) {
		t.Fatalf("ranges %v", rs)
	}
	got := make([]byte, 5*4096)
	if _, err := or.ReadAt(ctx, got, 0x7f0000100000); err != nil && err.Error() != "EOF" {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b) {
		t.Fatal("sparse read differs")
	}
	hole := make([]byte, 4096)
	or.ReadAt(ctx, hole, 0x7f0000050000)
	if !bytes.Equal(hole, make([]byte, 4096)) {
		t.Fatal("hole is not zero")
	}
}
