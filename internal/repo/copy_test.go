package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/s3test"
)

func TestCopySendsOnlyMissingChunks(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemRepo(t, nil), newMemRepo(t, nil)
	a, b := randBytes(1, 300<<10), randBytes(2, 300<<10)
	m1 := writeCkpt(t, src, "job", nil, map[string][]byte{"a": a})
	m2 := writeCkpt(t, src, "job", m1, map[string][]byte{"a": a, "b": b})
	c1, st, err := src.CopyTo(ctx, m1, dst, nil)
	if err != nil || c1.ID() != m1.ID() || st.Copied != len(m1.Chunks) {
		t.Fatalf("first copy: %v %+v", err, st)
	}
	c2, st, err := src.CopyTo(ctx, m2, dst, nil)
	if err != nil || c2.ID() != m2.ID() {
		t.Fatal(err)
	}
	if st.Copied >= st.Chunks || st.Copied == 0 {
		t.Fatalf("second copy sent %d of %d chunks: shared chunks must not be sent again", st.Copied, st.Chunks)
	}
	if _, st, _ := src.CopyTo(ctx, m2, dst, nil); !st.AlreadyThere {
		t.Fatal("a third copy sent data again")
	}
	if got := readObj(t, dst, c2, "b"); !bytes.Equal(got, b) {
		t.Fatal("copied object differs")
	}
	if err := dst.Verify(ctx, c2, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCopyReseals(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemRepo(t, nil), newMemRepo(t, []byte("destination key!!"))
	a := randBytes(3, 200<<10)
	m := writeCkpt(t, src, "job", nil, map[string][]byte{"a": a})
	c, _, err := src.CopyTo(ctx, m, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() == m.ID() || c.Name != m.Name || c.Seq != m.Seq {
		t.Fatalf("re-sealed copy: id %s seq %d", c.ID(), c.Seq)
	}
	if err := dst.Verify(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, dst, c, "a"); !bytes.Equal(got, a) {
		t.Fatal("re-sealed object differs")
	}
}

func TestCopyDoesNotSpreadDamage(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemRepo(t, nil), newMemRepo(t, nil)
	m := writeCkpt(t, src, "job", nil, map[string][]byte{"a": randBytes(4, 100<<10)})
	be := src.Backend().(*backend.Mem)
	h := backend.Handle{Kind: backend.Chunk, Name: m.Chunks[0].ID}
	blob, _ := be.Load(ctx, h)
	blob[len(blob)-1] ^= 1
	be.Save(ctx, h, blob)
	_, _, err := src.CopyTo(ctx, m, dst, nil)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Chunk != m.Chunks[0].ID {
		t.Fatalf("copy of a damaged chunk: %v", err)
	}
	if _, err := dst.Load(ctx, m.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a damaged checkpoint reached the destination: %v", err)
	}
}

// TestS3Repository runs a whole repository on a real S3 server: write,
// incremental write, read, verify, gc.
func TestS3Repository(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	ctx := context.Background()
	r, err := InitLocation(ctx, srv.Location("ckpt/s3repo"), InitOptions{Key: []byte("s3 repository key")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocation(ctx, srv.Location("ckpt/s3repo"), nil, false); !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("open without key: %v", err)
	}
	a := randBytes(5, 1<<20)
	m1 := writeCkpt(t, r, "job", nil, map[string][]byte{"a": a})
	a[5000] ^= 1
	m2 := writeCkpt(t, r, "job", m1, map[string][]byte{"a": a})
	if got := readObj(t, r, m2, "a"); !bytes.Equal(got, a) {
		t.Fatal("S3 object differs")
	}
	if _, err := r.Retain(ctx, "job", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, m2, nil); err != nil {
		t.Fatal(err)
	}
}
