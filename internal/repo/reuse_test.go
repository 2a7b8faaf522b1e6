package repo

import (
	"bytes"
	"context"
	"testing"
)

// TestReuseParent: a sparse object written as the parent; the child writes
// the changed blocks and declares the others unchanged without data, in
// ascending order. It reads back equal to the parent with the changes, its
// block hashes serve the next incremental, and misuse is refused.
func TestReuseParent(t *testing.T) {
	ctx := context.Background()
	r := newMemRepo(t, nil)
	const pages = 300
	data := randBytes(3, pages*BlockSize)
	// Parent: two extents with a hole of 20 pages.
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess})
	ow, _ := w.Create("mem", "memory", nil)
	if err := ow.WriteAt(data[:100*BlockSize], 0); err != nil {
		t.Fatal(err)
	}
	if err := ow.WriteAt(data[120*BlockSize:], 120*BlockSize); err != nil {
		t.Fatal(err)
	}
	m1, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), data...)
	clear(want[100*BlockSize : 120*BlockSize])
	changed := []int{5, 6, 99, 150, 299}
	for _, p := range changed {
		want[p*BlockSize+7] ^= 0x5a
	}
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess, Parent: m1})
	ow, _ = w.Create("mem", "memory", nil)
	at := uint64(0)
	reuse := func(to uint64) {
		t.Helper()
		if to > at {
			if err := ow.ReuseParent(at, to-at); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, p := range changed {
		off := uint64(p) * BlockSize
		if p >= 120 && at < 120*BlockSize {
			reuse(100 * BlockSize)
			at = 120 * BlockSize
		}
		reuse(off)
		if err := ow.WriteAt(want[off:off+BlockSize], off); err != nil {
			t.Fatal(err)
		}
		at = off + BlockSize
	}
	if err := ow.ReuseParent(at-BlockSize, BlockSize); err == nil {
		t.Error("reuse below the previous end accepted")
	}
	if err := ow.ReuseParent(at+1, BlockSize); err == nil {
		t.Error("unaligned reuse accepted")
	}
	m2, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.ReusedBytes != int64(pages-20-len(changed))*BlockSize {
		t.Errorf("reused %d bytes", st.ReusedBytes)
	}
	if st.NewBytes > int64(len(changed))*BlockSize+pages*blockRecordLen {
		t.Errorf("stored %d new bytes", st.NewBytes)
	}
	if got := readObj(t, r, m2, "mem"); !bytes.Equal(got, want) {
		t.Fatal("object with reused blocks differs")
	}
	if err := r.Verify(ctx, m2, nil); err != nil {
		t.Fatal(err)
	}
	// The block hashes carried over make a plain incremental of the same
	// data store nothing but its block table.
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess, Parent: m2})
	ow, _ = w.Create("mem", "memory", nil)
	ow.WriteAt(want[:100*BlockSize], 0)
	ow.WriteAt(want[120*BlockSize:], 120*BlockSize)
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.ReusedBytes != int64(pages-20)*BlockSize {
		t.Errorf("third checkpoint reused %d bytes, want all", st.ReusedBytes)
	}
	// A range with blocks the parent lacks is refused.
	w, _ = r.NewWriter(ctx, WriterOptions{Name: "p", Kind: KindProcess, Parent: m1})
	ow, _ = w.Create("mem", "memory", nil)
	if err := ow.ReuseParent(90*BlockSize, 20*BlockSize); err == nil {
		t.Error("reuse of a hole of the parent accepted")
	}
	w.Abort()
}
