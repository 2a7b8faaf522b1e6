package repo

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/vfs"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func newMemRepo(t testing.TB, key []byte) *Repository {
	t.Helper()
	r, err := Init(context.Background(), backend.NewMem(), InitOptions{Key: key, ChunkSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeCkpt(t testing.TB, r *Repository, name string, parent *Manifest, objs map[string][]byte) *Manifest {
	t.Helper()
	ctx := context.Background()
	w, err := r.NewWriter(ctx, WriterOptions{Name: name, Kind: KindLibrary, Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sortedKeys(objs) {
		ow, err := w.Create(n, "bytes", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ow.Write(objs[n]); err != nil {
			t.Fatal(err)
		}
		if err := ow.Close(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readObj(t testing.TB, r *Repository, m *Manifest, name string) []byte {
	t.Helper()
	or, err := r.OpenObject(m, name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := or.ReadAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripAndIncremental(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("0123456789abcdef0123")} {
		r := newMemRepo(t, key)
		data := randBytes(1, 1<<20+123)
		small := []byte("hello")
		m1 := writeCkpt(t, r, "job", nil, map[string][]byte{"a": data, "b": small, "empty": {}})
		if m1.Seq != 1 || len(m1.ID()) != 64 {
			t.Fatalf("seq %d id %q", m1.Seq, m1.ID())
		}
		if got := readObj(t, r, m1, "a"); !bytes.Equal(got, data) {
			t.Fatal("object a differs after round trip")
		}
		if got := readObj(t, r, m1, "b"); !bytes.Equal(got, small) {
			t.Fatalf("object b = %q", got)
		}
		// Change 1% of the pages.
		data2 := append([]byte(nil), data...)
		pages := len(data2) / BlockSize
		rng := rand.New(rand.NewPCG(7, 7))
		for i := 0; i < pages/100+1; i++ {
			data2[rng.IntN(pages)*BlockSize+17] ^= 0xff
		}
		w, _ := r.NewWriter(context.Background(), WriterOptions{Name: "job", Kind: KindLibrary, Parent: m1})
		ow, _ := w.Create("a", "bytes", nil)
		ow.Write(data2)
		m2, err := w.Commit(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st := w.Stats()
		if st.NewBytes > int64(len(data))*3/100+2*blockRecordLen*int64(pages) {
			t.Errorf("incremental stored %d new bytes of %d", st.NewBytes, len(data))
		}
		if m2.Seq != 2 || m2.Parent != m1.ID() {
			t.Fatalf("seq %d parent %q", m2.Seq, m2.Parent)
		}
		if got := readObj(t, r, m2, "a"); !bytes.Equal(got, data2) {
			t.Fatal("incremental object differs")
		}
		if err := r.Verify(context.Background(), m2, nil); err != nil {
			t.Fatal(err)
		}
		ms, err := r.Resolve(context.Background(), "job")
		if err != nil || len(ms) != 2 || ms[0].ID() != m2.ID() {
			t.Fatalf("resolve: %v %d", err, len(ms))
		}
		if ms, err := r.Resolve(context.Background(), m1.ID()[:8]); err != nil || ms[0].ID() != m1.ID() {
			t.Fatalf("prefix resolve: %v", err)
		}
		if ms, err := r.Resolve(context.Background(), "job@1"); err != nil || ms[0].ID() != m1.ID() {
			t.Fatalf("seq resolve: %v", err)
		}
		if _, err := r.Resolve(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing name: %v", err)
		}
	}
}

func TestLocalCrashAtEveryStep(t *testing.T) {
	ctx := context.Background()
	fsys := vfs.NewCrashableMem()
	r := initLocalOn(t, fsys, "/repo", 16<<10)
	v1 := randBytes(3, 100<<10)
	m1 := writeCkpt(t, r, "job", nil, map[string][]byte{"x": v1})
	v2 := randBytes(4, 100<<10)
	// Count the operations of a second checkpoint, then crash after each.
	base := fsys.Ops()
	writeCkpt(t, r, "probe", nil, map[string][]byte{"x": v2})
	total := fsys.Ops() - base
	if total < 10 {
		t.Fatalf("only %d operations in a checkpoint?", total)
	}
	for k := 0; k <= total; k++ {
		fsys2 := vfs.NewCrashableMem()
		be, _ := backend.CreateLocal(fsys2, "/repo")
		r, _ := Init(ctx, be, InitOptions{ChunkSize: 16 << 10})
		m1 := writeCkpt(t, r, "job", nil, map[string][]byte{"x": v1})
		fsys2.SetCrashAfter(k)
		w, err := r.NewWriter(ctx, WriterOptions{Name: "job", Kind: KindLibrary, Parent: m1})
		if err == nil {
			if ow, err := w.Create("x", "bytes", nil); err == nil {
				ow.Write(v2)
			}
			w.Commit(ctx)
		}
		fsys2.Crash()
		be2, err := backend.OpenLocal(fsys2, "/repo")
		if err != nil {
			t.Fatalf("crash after %d ops: %v", k, err)
		}
		r2, err := Open(ctx, be2, nil)
		if err != nil {
			t.Fatalf("crash after %d ops: %v", k, err)
		}
		ms, bad, err := r2.List(ctx)
		if err != nil || len(bad) > 0 {
			t.Fatalf("crash after %d ops: list: %v %v", k, err, bad)
		}
		for _, m := range ms {
			if err := r2.Verify(ctx, m, nil); err != nil {
				t.Fatalf("crash after %d ops: %s does not verify: %v", k, m.Ref(), err)
			}
			want := v1
			if m.Seq == 2 {
				want = v2
			}
			if got := readObj(t, r2, m, "x"); !bytes.Equal(got, want) {
				t.Fatalf("crash after %d ops: %s has wrong contents", k, m.Ref())
			}
		}
		if len(ms) == 0 || ms[len(ms)-1].ID() != m1.ID() {
			t.Fatalf("crash after %d ops: first checkpoint lost", k)
		}
	}
	_ = m1
}

func sortedKeys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

func TestIncompleteNotResolvedByName(t *testing.T) {
	ctx := context.Background()
	r := newMemRepo(t, nil)
	m1 := writeCkpt(t, r, "job", nil, map[string][]byte{"a": []byte("one")})
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "job", Kind: KindProcess, Meta: map[string]string{MetaIncomplete: "pre-copy"}})
	ow, _ := w.Create("a", "bytes", nil)
	ow.Write([]byte("partial"))
	m2, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := r.Resolve(ctx, "job"); err != nil || len(ms) != 1 || ms[0].ID() != m1.ID() {
		t.Fatalf("NAME resolved to an incomplete checkpoint: %v", err)
	}
	if ms, err := r.Resolve(ctx, "job@2"); err != nil || ms[0].ID() != m2.ID() {
		t.Fatalf("NAME@SEQ of an incomplete checkpoint: %v", err)
	}
	if m3 := writeCkpt(t, r, "job", nil, map[string][]byte{"a": []byte("three")}); m3.Seq != 3 {
		t.Fatalf("the next checkpoint got sequence %d, want 3 (after the incomplete 2)", m3.Seq)
	}
}

// TestPreCopyCompletionTakesItsNumber: the checkpoint a pre-copy pass led
// to (its parent is the pass) takes the pass's sequence number, so that
// NAME@SEQ counts checkpoints, not passes; NAME@SEQ then names it, not
// the pass, and the numbering goes on from there.
func TestPreCopyCompletionTakesItsNumber(t *testing.T) {
	ctx := context.Background()
	r := newMemRepo(t, nil)
	writeCkpt(t, r, "job", nil, map[string][]byte{"a": []byte("one")})
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "job", Kind: KindProcess, Meta: map[string]string{MetaIncomplete: "pre-copy"}})
	ow, _ := w.Create("a", "bytes", nil)
	ow.Write([]byte("most of two"))
	pass, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := writeCkpt(t, r, "job", pass, map[string][]byte{"a": []byte("two")})
	if pass.Seq != 2 || done.Seq != 2 {
		t.Fatalf("sequence numbers: pass %d, its checkpoint %d; want 2 and 2", pass.Seq, done.Seq)
	}
	for _, ref := range []string{"job", "job@2"} {
		if ms, err := r.Resolve(ctx, ref); err != nil || ms[0].ID() != done.ID() {
			t.Fatalf("%s does not name the completed checkpoint first: %v", ref, err)
		}
	}
	if err := r.Remove(ctx, pass.ID()); err != nil {
		t.Fatal(err)
	}
	if m := writeCkpt(t, r, "job", done, map[string][]byte{"a": []byte("three")}); m.Seq != 3 {
		t.Fatalf("the next checkpoint got sequence %d, want 3", m.Seq)
	}
}
