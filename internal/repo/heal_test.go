package repo

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/vfs"
)

// A damaged chunk is dropped, and rewriting its content heals the
// checkpoint that refers to it; an intact chunk is kept.
func TestDropDamagedAndRewrite(t *testing.T) {
	ctx := context.Background()
	r := newMemRepo(t, nil)
	data := randBytes(9, 200<<10)
	m := writeCkpt(t, r, "job", nil, map[string][]byte{"x": data})
	id, _ := ParseID(m.Chunks[0].ID)
	if dropped, err := r.DropDamaged(ctx, id); dropped || err != nil {
		t.Fatalf("intact chunk: dropped %v, %v", dropped, err)
	}
	h := backend.Handle{Kind: backend.Chunk, Name: id.String()}
	blob, _ := r.be.Load(ctx, h)
	blob[len(blob)-1] ^= 1
	r.be.Save(ctx, h, blob)
	if err := r.Verify(ctx, m, nil); err == nil {
		t.Fatal("damage not detected")
	}
	// Without dropping, identical content deduplicates against the damage.
	m2 := writeCkpt(t, r, "job", nil, map[string][]byte{"x": data})
	if err := r.Verify(ctx, m2, nil); err == nil {
		t.Fatal("expected the deduplicated checkpoint to share the damage")
	}
	if dropped, err := r.DropDamaged(ctx, id); !dropped || err != nil {
		t.Fatalf("damaged chunk: dropped %v, %v", dropped, err)
	}
	m3 := writeCkpt(t, r, "job", nil, map[string][]byte{"x": data})
	for _, mm := range []*Manifest{m, m2, m3} {
		if err := r.Verify(ctx, mm, nil); err != nil {
			t.Fatalf("%s after rewrite: %v", mm.Ref(), err)
		}
	}
	// Rewrite stores chunks even when present.
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "job", Kind: KindLibrary, Rewrite: true})
	ow, _ := w.Create("x", "bytes", nil)
	ow.Write(data)
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.DedupChunks != 0 || st.NewChunks == 0 || st.Bytes != int64(len(data)) {
		t.Fatalf("rewrite stats %+v", st)
	}
}

// A first use killed after the skeleton was made but before the config was
// stored leaves a directory that the next first use initialises.
func TestOpenDirAfterInterruptedInit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir() + "/repo"
	if _, err := backend.CreateLocal(vfs.OS, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(ctx, dir, nil, false); !errors.Is(err, ErrNotRepository) {
		t.Fatalf("open without create: %v", err)
	}
	r, err := OpenDir(ctx, dir, nil, true)
	if err != nil {
		t.Fatalf("open with create: %v", err)
	}
	writeCkpt(t, r, "job", nil, map[string][]byte{"x": []byte("hello")})
	// Now it holds a repository: never initialised again.
	if _, err := InitDir(ctx, dir, InitOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("init over a repository: %v", err)
	}
	if err := os.Remove(dir + "/config"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(ctx, dir, nil, true); err == nil {
		t.Fatal("a directory with manifests but no config was initialised again")
	}
}

// Every codec, sealed or not, on data that compresses and data that does
// not, round-trips through the reused encode buffers.
func TestEncodeBuffersRoundTrip(t *testing.T) {
	ctx := context.Background()
	half := randBytes(5, 1<<20)
	clear(half[:len(half)/2])
	inputs := map[string][]byte{"random": randBytes(4, 3<<20+100), "zeros": make([]byte, 2<<20), "half": half, "tiny": []byte("abc")}
	for _, key := range [][]byte{nil, []byte("0123456789abcdef0123")} {
		for _, codec := range []Codec{CodecAuto, CodecNone, CodecS2, CodecZstd} {
			r := newMemRepo(t, key) // a fresh one: chunks would dedup across codecs
			w, err := r.NewWriter(ctx, WriterOptions{Name: "c", Kind: KindLibrary, Codec: codec, Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range sortedKeys(inputs) {
				ow, _ := w.Create(n, "bytes", nil)
				ow.Write(inputs[n])
				ow.Close()
			}
			m, err := w.Commit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Verify(ctx, m, nil); err != nil {
				t.Fatalf("codec %v key %v: %v", codec, key != nil, err)
			}
			for _, n := range sortedKeys(inputs) {
				if got := readObj(t, r, m, n); string(got) != string(inputs[n]) {
					t.Fatalf("codec %v key %v: object %s differs", codec, key != nil, n)
				}
			}
			if st := w.Stats(); codec != CodecNone && st.StoredBytes > st.NewBytes*3/4 {
				t.Errorf("codec %v: stored %d of %d: zeros did not compress", codec, st.StoredBytes, st.NewBytes)
			}
		}
	}
}
