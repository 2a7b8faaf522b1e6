package repo

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
)

// TestParallelSegments: an incremental sparse object whose extents
// alternate between the parent's chunks and the child's, part of it
// compressible (s2 chunks, decoded into reused buffers), in a local
// repository (buffers reused through backend.BufLoader), an encrypted one
// and an in-memory one (plain Load). What the workers hand out, put back
// at its offsets, equals ReadAt's view; every byte comes exactly once; an
// error from fn stops the workers and is returned.
func TestParallelSegments(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		repo func(t *testing.T) *Repository
	}{
		{"local", func(t *testing.T) *Repository { r, _ := newDirRepo(t, nil); return r }},
		{"encrypted", func(t *testing.T) *Repository { r, _ := newDirRepo(t, []byte("secret key material!")); return r }},
		{"mem", func(t *testing.T) *Repository { return newMemRepo(t, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.repo(t)
			const pages = 200
			data := randBytes(5, pages*BlockSize)
			clear(data[40*BlockSize : 80*BlockSize]) // compresses
			const base = 0x7f0000000000
			w, _ := r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess})
			ow, _ := w.Create("mem", "memory", nil)
			if err := ow.WriteAt(data[:150*BlockSize], base); err != nil {
				t.Fatal(err)
			}
			if err := ow.WriteAt(data[160*BlockSize:], base+160*BlockSize); err != nil {
				t.Fatal(err)
			}
			m1, err := w.Commit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The child changes scattered pages and reuses the rest.
			w, _ = r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess, Parent: m1})
			ow, _ = w.Create("mem", "memory", nil)
			for p := 0; p < pages; p++ {
				if p >= 150 && p < 160 {
					continue
				}
				off := uint64(p) * BlockSize
				if p%7 == 3 {
					data[off+9] ^= 0xa5
					if err := ow.WriteAt(data[off:off+BlockSize], base+off); err != nil {
						t.Fatal(err)
					}
				} else if err := ow.ReuseParent(base+off, BlockSize); err != nil {
					t.Fatal(err)
				}
			}
			m2, err := w.Commit(ctx)
			if err != nil {
				t.Fatal(err)
			}
			or, err := r.OpenObject(m2, "mem")
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			got := make([]byte, pages*BlockSize)
			seen := make([]int, pages)
			err = or.ParallelSegments(ctx, 3, func(off uint64, b []byte) error {
				mu.Lock()
				defer mu.Unlock()
				if off < base || off+uint64(len(b)) > base+uint64(len(got)) {
					t.Errorf("segment %#x+%d outside the object", off, len(b))
					return nil
				}
				copy(got[off-base:], b)
				for p := (off - base) / BlockSize; p < (off-base+uint64(len(b))+BlockSize-1)/BlockSize; p++ {
					seen[p]++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), data...)
			clear(want[150*BlockSize : 160*BlockSize])
			if !bytes.Equal(got, want) {
				t.Fatal("parallel segments differ from the object")
			}
			for p, n := range seen {
				if hole := p >= 150 && p < 160; (hole && n != 0) || (!hole && n != 1) {
					t.Fatalf("page %d handed out %d times", p, n)
				}
			}
			// An error from fn is returned and stops the others.
			stop := errors.New("stop")
			calls := 0
			err = or.ParallelSegments(ctx, 2, func(off uint64, b []byte) error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				return stop
			})
			if !errors.Is(err, stop) || calls > 2 {
				t.Fatalf("error %v after %d calls", err, calls)
			}
			// A cancelled context stops it too.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := or.ParallelSegments(cctx, 2, func(uint64, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled: %v", err)
			}
		})
	}
}
