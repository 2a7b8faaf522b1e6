package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
)

// TestWriteFrom: an object written through WriteFrom (fills deferred to the
// workers, block hashes computed there) reads back as written, beside
// unaligned WriteAt bytes, and its block hashes are the ones WriteAt
// computes: a child written with WriteAt reuses every unchanged block.
// With a parent, WriteFrom compares blocks as WriteAt does.
func TestWriteFrom(t *testing.T) {
	ctx := context.Background()
	r := newMemRepo(t, nil)
	const pages = 300
	data := randBytes(5, pages*BlockSize)
	var calls atomic.Int64
	fill := func(off uint64, b []byte) error {
		calls.Add(1)
		copy(b, data[off:])
		return nil
	}
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess})
	ow, _ := w.Create("mem", "memory", nil)
	if err := ow.WriteFrom(0, 100*BlockSize, fill); err != nil {
		t.Fatal(err)
	}
	if err := ow.WriteAt(data[110*BlockSize+5:110*BlockSize+9], 110*BlockSize+5); err != nil {
		t.Fatal(err)
	}
	if err := ow.WriteFrom(120*BlockSize, 180*BlockSize, fill); err != nil {
		t.Fatal(err)
	}
	if err := ow.WaitFills(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 2 {
		t.Errorf("fill called %d times", calls.Load())
	}
	m1, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), data...)
	clear(want[100*BlockSize : 120*BlockSize])
	copy(want[110*BlockSize+5:], data[110*BlockSize+5:110*BlockSize+9])
	if got := readObj(t, r, m1, "mem"); !bytes.Equal(got, want) {
		t.Fatal("object written with WriteFrom differs")
	}
	if err := r.Verify(ctx, m1, nil); err != nil {
		t.Fatal(err)
	}

	// A child with two pages changed, written with WriteAt, then one
	// written with WriteFrom on that child: only changed blocks are new.
	data[7*BlockSize] ^= 1
	data[200*BlockSize+9] ^= 1
	for i, parent := range []*Manifest{m1, nil} {
		if parent == nil {
			var err error
			w, _ = r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess, Parent: m1})
			ow, _ = w.Create("mem", "memory", nil)
			ow.WriteAt(data[:100*BlockSize], 0)
			ow.WriteAt(data[120*BlockSize:], 120*BlockSize)
			if parent, err = w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			data[250*BlockSize] ^= 1
		}
		w, _ = r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess, Parent: parent})
		ow, _ = w.Create("mem", "memory", nil)
		if i == 0 {
			ow.WriteAt(data[:100*BlockSize], 0)
			ow.WriteAt(data[120*BlockSize:], 120*BlockSize)
		} else {
			ow.WriteFrom(0, 100*BlockSize, fill)
			ow.WriteFrom(120*BlockSize, 180*BlockSize, fill)
		}
		m, err := w.Commit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := w.Stats(); st.ReusedBytes != (pages-20-2)*BlockSize && st.ReusedBytes != (pages-20-1)*BlockSize {
			t.Errorf("pass %d: reused %d bytes of %d", i, st.ReusedBytes, (pages-20)*BlockSize)
		}
		got := readObj(t, r, m, "mem")
		if !bytes.Equal(got[:100*BlockSize], data[:100*BlockSize]) || !bytes.Equal(got[120*BlockSize:], data[120*BlockSize:]) {
			t.Fatalf("pass %d: incremental object differs", i)
		}
	}

	// A failing fill fails the writer.
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "bad", Kind: KindProcess})
	ow, _ = w.Create("mem", "memory", nil)
	boom := errors.New("boom")
	if err := ow.WriteFrom(0, 40*BlockSize, func(uint64, []byte) error { return boom }); err != nil && !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := ow.WaitFills(); !errors.Is(err, boom) {
		t.Fatalf("WaitFills: %v", err)
	}
	if _, err := w.Commit(ctx); err == nil {
		t.Fatal("commit after a failed fill succeeded")
	}
}

// TestWriteFromParallel: with a parent, a WriteFrom longer than pieceSpan
// is read and hashed in pieces by several goroutines (pieces ending at
// pieceSpan multiples, the range starting off one), then compared in
// order: the child reads back exactly, only the changed blocks are new,
// and a failing fill is returned.
func TestWriteFromParallel(t *testing.T) {
	ctx := context.Background()
	r := newMemRepo(t, nil)
	const pages = 3*pieceSpan/BlockSize + 77
	const base = 5*pieceSpan - 13*BlockSize
	data := randBytes(6, pages*BlockSize)
	fill := func(off uint64, b []byte) error {
		if off < base || off+uint64(len(b)) > base+uint64(len(data)) {
			return fmt.Errorf("fill %#x+%d outside the range", off, len(b))
		}
		copy(b, data[off-base:])
		return nil
	}
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess})
	ow, _ := w.Create("mem", "memory", nil)
	if err := ow.WriteAt(data, base); err != nil {
		t.Fatal(err)
	}
	m1, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changed := []int{0, 12, 13, 14, 600, pages / 2, pages - 1}
	for _, p := range changed {
		data[p*BlockSize+100] ^= 0x77
	}
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess, Parent: m1})
	ow, _ = w.Create("mem", "memory", nil)
	if err := ow.WriteFrom(base, len(data), fill); err != nil {
		t.Fatal(err)
	}
	m2, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.ReusedBytes != int64(pages-len(changed))*BlockSize {
		t.Errorf("reused %d bytes, want %d", st.ReusedBytes, (pages-len(changed))*BlockSize)
	}
	if got := readObj(t, r, m2, "mem"); !bytes.Equal(got[base:], data) {
		t.Fatal("incremental object differs")
	}
	// The child's block table serves the next one: nothing changed.
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess, Parent: m2})
	ow, _ = w.Create("mem", "memory", nil)
	if err := ow.WriteFrom(base, len(data), fill); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.ReusedBytes != int64(pages)*BlockSize {
		t.Errorf("unchanged: reused %d bytes of %d", st.ReusedBytes, pages*BlockSize)
	}
	boom := errors.New("boom")
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "wf", Kind: KindProcess, Parent: m2})
	ow, _ = w.Create("mem", "memory", nil)
	err = ow.WriteFrom(base, len(data), func(off uint64, b []byte) error {
		if off >= base+pieceSpan {
			return boom
		}
		return fill(off, b)
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failing fill: %v", err)
	}
	w.Abort()
}
