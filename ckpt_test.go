package ckpt_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
)

var ctx = context.Background()

func open(t testing.TB, name string, opts ...ckpt.Option) *ckpt.Job {
	t.Helper()
	j, err := ckpt.Open(name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func protect(t testing.TB, j *ckpt.Job, name string, v any) {
	t.Helper()
	if err := j.Protect(name, v); err != nil {
		t.Fatal(err)
	}
}

func randFloats(seed uint64, n int) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	s := make([]float64, n)
	for i := range s {
		s[i] = r.NormFloat64()
	}
	return s
}

type vec3 struct{ X, Y, Z float64 }

// padded has padding after A, so it goes through encoding/binary.
type padded struct {
	A int8
	B int64
	C [2]uint16
}

type record struct {
	Name  string
	Tags  map[string]int
	Count int
	Next  *record
}

// marshaled implements BinaryMarshaler on a value receiver and
// BinaryUnmarshaler on a pointer one, as most types do.
type marshaled struct{ a, b uint32 }

func (m marshaled) MarshalBinary() ([]byte, error) {
	return []byte{byte(m.a), byte(m.b), 0xee}, nil
}

func (m *marshaled) UnmarshalBinary(b []byte) error {
	if len(b) != 3 || b[2] != 0xee {
		return errors.New("bad marshaled value")
	}
	m.a, m.b = uint32(b[0]), uint32(b[1])
	return nil
}

// typeCase protects fresh values built by mk; set fills them with data
// derived from seed; the values after a restore must deep-equal what set
// wrote.
type typeCase struct {
	name string
	mk   func() any // a zeroed value to protect (as a pointer or slice)
	set  func(v any, seed uint64)
}

func typeCases() []typeCase {
	r := func(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 2)) }
	return []typeCase{
		{"bytes", func() any { return make([]byte, 10000) }, func(v any, s uint64) {
			for i, b := range v.([]byte) {
				_ = b
				v.([]byte)[i] = byte(r(s).Uint32() + uint32(i))
			}
		}},
		{"float64s", func() any { return make([]float64, 5000) }, func(v any, s uint64) { copy(v.([]float64), randFloats(s, 5000)) }},
		{"float32s", func() any { return make([]float32, 777) }, func(v any, s uint64) {
			for i := range v.([]float32) {
				v.([]float32)[i] = float32(s) * float32(i) / 3
			}
		}},
		{"int64s", func() any { return make([]int64, 100) }, func(v any, s uint64) {
			for i := range v.([]int64) {
				v.([]int64)[i] = int64(s)*-1e15 + int64(i)
			}
		}},
		{"int32s", func() any { return make([]int32, 100) }, func(v any, s uint64) {
			for i := range v.([]int32) {
				v.([]int32)[i] = -int32(s) * int32(i)
			}
		}},
		{"uint64s", func() any { return make([]uint64, 3) }, func(v any, s uint64) { copy(v.([]uint64), []uint64{s, math.MaxUint64, 1 << 63}) }},
		{"uint32s", func() any { return make([]uint32, 2) }, func(v any, s uint64) { copy(v.([]uint32), []uint32{uint32(s), math.MaxUint32}) }},
		{"int16s", func() any { return make([]int16, 2) }, func(v any, s uint64) { copy(v.([]int16), []int16{int16(s), math.MinInt16}) }},
		{"uint16s", func() any { return make([]uint16, 2) }, func(v any, s uint64) { copy(v.([]uint16), []uint16{uint16(s), math.MaxUint16}) }},
		{"int8s", func() any { return make([]int8, 2) }, func(v any, s uint64) { copy(v.([]int8), []int8{int8(s), -128}) }},
		{"complex64s", func() any { return make([]complex64, 2) }, func(v any, s uint64) { copy(v.([]complex64), []complex64{complex(float32(s), -1), 3i}) }},
		{"complex128s", func() any { return make([]complex128, 2) }, func(v any, s uint64) {
			copy(v.([]complex128), []complex128{complex(float64(s), math.Inf(-1)), complex(math.Pi, math.SmallestNonzeroFloat64)})
		}},
		{"bools", func() any { return make([]bool, 5) }, func(v any, s uint64) { copy(v.([]bool), []bool{s%2 == 0, true, false, true, s%3 == 0}) }},
		{"structs", func() any { return make([]vec3, 50) }, func(v any, s uint64) {
			for i := range v.([]vec3) {
				v.([]vec3)[i] = vec3{float64(s), float64(i), -float64(i) / 7}
			}
		}},
		{"arrays", func() any { return make([][3]float32, 50) }, func(v any, s uint64) {
			for i := range v.([][3]float32) {
				v.([][3]float32)[i] = [3]float32{float32(s), float32(i), 1.5}
			}
		}},
		{"empty", func() any { return []float64{} }, func(v any, s uint64) {}},
		{"slice pointer", func() any { return new([]float64) }, func(v any, s uint64) { *v.(*[]float64) = randFloats(s, 1234+int(s)) }},
		{"NaN bits", func() any { return make([]float64, 2) }, func(v any, s uint64) {
			copy(v.([]float64), []float64{math.Float64frombits(0x7ff8dead00000000 | s), math.Copysign(0, -1)})
		}},
		{"int64", func() any { return new(int64) }, func(v any, s uint64) { *v.(*int64) = -int64(s) * 1e12 }},
		{"float64", func() any { return new(float64) }, func(v any, s uint64) { *v.(*float64) = float64(s) / 3 }},
		{"array", func() any { return new([4]uint32) }, func(v any, s uint64) { *v.(*[4]uint32) = [4]uint32{uint32(s), 2, 3, 4} }},
		{"struct", func() any { return new(vec3) }, func(v any, s uint64) { *v.(*vec3) = vec3{1, float64(s), 3} }},
		{"padded struct", func() any { return new(padded) }, func(v any, s uint64) { *v.(*padded) = padded{-3, int64(s) << 40, [2]uint16{7, 9}} }},
		{"marshaler", func() any { return new(marshaled) }, func(v any, s uint64) { *v.(*marshaled) = marshaled{uint32(s % 200), 42} }},
		{"time", func() any { return new(time.Time) }, func(v any, s uint64) {
			*v.(*time.Time) = time.Date(2026, 11, 24, 8, 0, int(s), 5, time.FixedZone("x", 3600))
		}},
		{"big.Int", func() any { return new(big.Int) }, func(v any, s uint64) { v.(*big.Int).Lsh(big.NewInt(int64(s)+1), 200) }},
		{"gob struct", func() any { return new(record) }, func(v any, s uint64) {
			*v.(*record) = record{Name: "n" + string(rune('a'+s%26)), Tags: map[string]int{"x": int(s)}, Count: int(s), Next: &record{Name: "child"}}
		}},
		{"gob map", func() any { return &map[string][]int{} }, func(v any, s uint64) { *v.(*map[string][]int) = map[string][]int{"a": {1, int(s)}, "b": nil} }},
		{"gob strings", func() any { return new([]string) }, func(v any, s uint64) { *v.(*[]string) = []string{"x", strings.Repeat("y", int(s))} }},
		{"int via gob", func() any { return new(int) }, func(v any, s uint64) { *v.(*int) = int(s) * 1000 }},
	}
}

func TestRoundTripEveryType(t *testing.T) {
	for _, async := range []bool{true, false} {
		be := backend.NewMem()
		cases := typeCases()
		w := open(t, "types", ckpt.WithBackend(be), ckpt.WithAsync(async))
		vals := make([]any, len(cases))
		for i, c := range cases {
			vals[i] = c.mk()
			protect(t, w, c.name, vals[i])
		}
		// Two checkpoints, so the second is incremental against the first
		// and Restore must return the newer values.
		for seed := uint64(1); seed <= 2; seed++ {
			for i, c := range cases {
				c.set(vals[i], seed*11)
			}
			if err := w.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Wait(); err != nil {
			t.Fatal(err)
		}
		last, ok := w.LastCommit()
		if !ok || last.Seq != 2 {
			t.Fatalf("last commit %+v %v", last, ok)
		}
		r := open(t, "types", ckpt.WithBackend(be))
		got := make([]any, len(cases))
		for i, c := range cases {
			got[i] = c.mk()
			protect(t, r, c.name, got[i])
		}
		info, err := r.Restore(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Seq != 2 || info.ID != last.ID || len(info.Skipped) != 0 {
			t.Fatalf("restore info %+v, want seq 2 id %s", info, last.ID)
		}
		for i, c := range cases {
			if tg, ok := got[i].(*time.Time); ok {
				// DeepEqual compares *Location pointers; Equal and the
				// offset are what a time value means.
				tw := vals[i].(*time.Time)
				_, og := tg.Zone()
				_, ow := tw.Zone()
				if !tg.Equal(*tw) || og != ow {
					t.Errorf("time: restored %v, want %v", tg, tw)
				}
				continue
			}
			if !reflect.DeepEqual(got[i], vals[i]) && !bitsEqual(got[i], vals[i]) {
				t.Errorf("async=%v %s: restored %v, want %v", async, c.name, short(got[i]), short(vals[i]))
			}
		}
	}
}

// bitsEqual compares float slices bit for bit (DeepEqual says NaN != NaN).
func bitsEqual(a, b any) bool {
	x, ok1 := a.([]float64)
	y, ok2 := b.([]float64)
	if !ok1 || !ok2 || len(x) != len(y) {
		return false
	}
	for i := range x {
		if math.Float64bits(x[i]) != math.Float64bits(y[i]) {
			return false
		}
	}
	return true
}

func short(v any) string {
	s := reflect.ValueOf(v).String()
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Len() > 4 {
		s = reflect.ValueOf(v).Slice(0, 4).String() + "…"
	}
	return s
}

func TestProtectRejects(t *testing.T) {
	j := open(t, "rejects", ckpt.WithBackend(backend.NewMem()))
	var nilp *int64
	type unexported struct{ _ int }
	for _, c := range []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, "nil value"},
		{"nil pointer", nilp, "nil *int64"},
		{"value", int64(3), "pass a slice or a pointer"},
		{"int slice", []int{1}, "protect a pointer"},
		{"string slice", []string{"a"}, "protect a pointer"},
		{"no exported fields", &unexported{}, "encoding/gob"},
		{"marshaler by value", marshaled{}, "not BinaryUnmarshaler"},
	} {
		err := j.Protect(c.name, c.v)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if err := j.Protect("", new(int64)); err == nil {
		t.Error("empty name accepted")
	}
	if err := j.Checkpoint(ctx); err == nil {
		t.Error("checkpoint with nothing protected succeeded")
	}
}

func TestRestoreMismatch(t *testing.T) {
	be := backend.NewMem()
	w := open(t, "mm", ckpt.WithBackend(be), ckpt.WithAsync(false))
	data := randFloats(1, 1000)
	step := int64(7)
	protect(t, w, "data", data)
	protect(t, w, "step", &step)
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	check := func(desc string, wantMsg string, setup func(j *ckpt.Job)) {
		t.Helper()
		j := open(t, "mm", ckpt.WithBackend(be))
		untouched := int64(-1)
		protect(t, j, "step", &untouched)
		setup(j)
		_, err := j.Restore(ctx)
		if !errors.Is(err, ckpt.ErrMismatch) || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("%s: got %v, want ErrMismatch with %q", desc, err, wantMsg)
		}
		if untouched != -1 {
			t.Errorf("%s: a value was overwritten by a refused restore", desc)
		}
	}
	check("shorter slice", "holds 1000 elements, the protected slice has 999", func(j *ckpt.Job) {
		protect(t, j, "data", make([]float64, 999))
	})
	check("other element type", "holds []float64, the protected value is []int64", func(j *ckpt.Job) {
		protect(t, j, "data", make([]int64, 1000))
	})
	check("missing variable", `"extra"`, func(j *ckpt.Job) {
		protect(t, j, "data", make([]float64, 1000))
		protect(t, j, "extra", new(int64))
	})
	check("fixed vs gob", `needs "gob"`, func(j *ckpt.Job) {
		protect(t, j, "data", &map[string]int{})
	})

	// A slice pointer is resized, from nil and from a longer slice.
	for _, start := range [][]float64{nil, make([]float64, 5000), make([]float64, 10, 2000)} {
		j := open(t, "mm", ckpt.WithBackend(be))
		got := start
		var s int64
		protect(t, j, "data", &got)
		protect(t, j, "step", &s)
		if _, err := j.Restore(ctx); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, data) || s != 7 {
			t.Fatalf("restore into a slice pointer (len %d): got len %d step %d", len(start), len(got), s)
		}
	}
	// Adding a variable after Restore is the way to extend a job.
	j := open(t, "mm", ckpt.WithBackend(be))
	got := make([]float64, 1000)
	var s int64
	protect(t, j, "data", got)
	info, err := j.Restore(ctx)
	if err != nil || !reflect.DeepEqual(info.Ignored, []string{"step"}) {
		t.Fatalf("restore of a subset: %v, ignored %v", err, info.Ignored)
	}
	protect(t, j, "step2", &s)
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNoCheckpoint(t *testing.T) {
	j := open(t, "none", ckpt.WithBackend(backend.NewMem()))
	protect(t, j, "x", new(int64))
	if _, err := j.Restore(ctx); !errors.Is(err, ckpt.ErrNoCheckpoint) {
		t.Fatalf("got %v, want ErrNoCheckpoint", err)
	}
}

// The staging copy decouples the program from the commit: values changed
// right after Checkpoint returns must not leak into that checkpoint.
func TestAsyncStagingIsolation(t *testing.T) {
	be := backend.NewMem()
	hold := make(chan struct{})
	started := make(chan struct{}, 10)
	w := open(t, "iso", ckpt.WithBackend(&gateBackend{Backend: be, hold: hold, started: started}))
	data := randFloats(3, 1<<20) // 8 MiB: the parallel copy path
	want := append([]float64(nil), data...)
	protect(t, w, "data", data)
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	<-started // the commit is saving chunks and now blocked
	for i := range data {
		data[i] = -1
	}
	close(hold)
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	r := open(t, "iso", ckpt.WithBackend(be))
	got := make([]float64, len(data))
	protect(t, r, "data", got)
	if _, err := r.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("values changed after Checkpoint returned leaked into the checkpoint")
	}
}

// gateBackend blocks chunk saves until hold is closed, announcing each.
type gateBackend struct {
	backend.Backend
	hold    chan struct{}
	started chan struct{}
}

func (g *gateBackend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if h.Kind == backend.Chunk {
		select {
		case g.started <- struct{}{}:
		default:
		}
		<-g.hold
	}
	return g.Backend.Save(ctx, h, data)
}

// failBackend fails chunk saves while fail is set, and says so on failed.
type failBackend struct {
	backend.Backend
	fail   atomic.Bool
	failed chan struct{}
}

var errInjected = errors.New("injected disk failure")

func (f *failBackend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if f.fail.Load() && h.Kind == backend.Chunk {
		select {
		case f.failed <- struct{}{}:
		default:
		}
		return errInjected
	}
	return f.Backend.Save(ctx, h, data)
}

func TestAsyncErrorsAreReported(t *testing.T) {
	fb := &failBackend{Backend: backend.NewMem(), failed: make(chan struct{})}
	j := open(t, "fail", ckpt.WithBackend(fb))
	data := randFloats(4, 10000)
	protect(t, j, "data", data)
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}

	// Wait returns the failure.
	fb.fail.Store(true)
	copy(data, randFloats(5, 10000))
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatalf("staging failed: %v", err)
	}
	if err := j.Wait(); !errors.Is(err, errInjected) {
		t.Fatalf("Wait: %v, want the injected error", err)
	}
	if err := j.Wait(); err != nil {
		t.Fatalf("an error is reported once, then forgotten: %v", err)
	}

	// The next Checkpoint returns the failure and takes no checkpoint.
	copy(data, randFloats(6, 10000))
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	<-fb.failed          // the background commit has hit the failure
	fb.fail.Store(false) // so the next one could succeed
	if err := j.Checkpoint(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("Checkpoint after a failed commit: %v", err)
	}
	if last, _ := j.LastCommit(); last.Seq != 1 {
		t.Fatalf("last commit seq %d, want 1 (the others failed)", last.Seq)
	}
	// Calling again retries and succeeds.
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}
	if last, _ := j.LastCommit(); last.Seq != 2 {
		t.Fatalf("last commit seq %d, want 2", last.Seq)
	}

	// Close returns the failure of the last commit.
	fb.fail.Store(true)
	copy(data, randFloats(8, 10000))
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); !errors.Is(err, errInjected) {
		t.Fatalf("Close: %v, want the injected error", err)
	}
	if err := j.Checkpoint(ctx); !errors.Is(err, ckpt.ErrClosed) {
		t.Fatalf("Checkpoint after Close: %v", err)
	}

	// Sync mode returns it directly.
	s := open(t, "fail", ckpt.WithBackend(fb), ckpt.WithAsync(false))
	protect(t, s, "data", data)
	if err := s.Checkpoint(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("sync Checkpoint: %v", err)
	}
}

func TestSequenceRetentionAndIncremental(t *testing.T) {
	be := backend.NewMem()
	var commits []ckpt.CommitInfo
	j := open(t, "seq", ckpt.WithBackend(be), ckpt.WithKeep(2), ckpt.WithCommitHook(func(c ckpt.CommitInfo) { commits = append(commits, c) }))
	data := make([]byte, 4<<20)
	copy(data, bytes.Repeat([]byte("abcdefgh"), len(data)/8))
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	protect(t, j, "data", data)
	for k := 0; k < 4; k++ {
		if k > 0 {
			// Change 1% of the 4 KiB pages.
			for p := 0; p < len(data)/4096/100+1; p++ {
				data[rng.IntN(len(data)/4096)*4096+rng.IntN(4096)]++
			}
		}
		if err := j.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(commits) != 4 {
		t.Fatalf("%d commits reported", len(commits))
	}
	for i, c := range commits {
		if c.Seq != uint64(i+1) || c.Bytes != int64(len(data)) {
			t.Errorf("commit %d: %+v", i, c)
		}
		if i > 0 && c.NewBytes > int64(len(data))*3/100 {
			t.Errorf("commit %d stored %d new bytes of %d: not incremental", i, c.NewBytes, len(data))
		}
		if i >= 2 && c.Removed != 1 {
			t.Errorf("commit %d removed %d old checkpoints, want 1", i, c.Removed)
		}
	}
	r, _ := repo.Open(ctx, be, nil)
	ms, err := r.Resolve(ctx, "seq")
	if err != nil || len(ms) != 2 || ms[0].Seq != 4 || ms[1].Seq != 3 {
		t.Fatalf("retention kept %d checkpoints (%v)", len(ms), err)
	}
	got := make([]byte, len(data))
	rj := open(t, "seq", ckpt.WithBackend(be))
	protect(t, rj, "data", got)
	if info, err := rj.Restore(ctx); err != nil || info.Seq != 4 || !bytes.Equal(got, data) {
		t.Fatalf("restore: %v seq %d equal %v", err, info.Seq, bytes.Equal(got, data))
	}
}

func TestMaybe(t *testing.T) {
	j := open(t, "maybe", ckpt.WithBackend(backend.NewMem()), ckpt.WithInterval(time.Hour))
	protect(t, j, "x", new(int64))
	if did, err := j.Maybe(ctx); did || err != nil {
		t.Fatalf("Maybe right after Open: %v %v", did, err)
	}
	j2 := open(t, "maybe", ckpt.WithBackend(backend.NewMem()), ckpt.WithInterval(0))
	protect(t, j2, "x", new(int64))
	if did, err := j2.Maybe(ctx); !did || err != nil {
		t.Fatalf("Maybe with interval 0: %v %v", did, err)
	}
	if err := j2.Wait(); err != nil {
		t.Fatal(err)
	}
	if c, ok := j2.LastCommit(); !ok || c.Seq != 1 {
		t.Fatalf("Maybe did not commit: %+v", c)
	}
}

// chunkFiles lists the chunk files of m that older does not use.
func chunkFiles(t *testing.T, dir string, m, older *repo.Manifest) []string {
	t.Helper()
	used := map[string]bool{}
	if older != nil {
		for _, c := range older.Chunks {
			used[c.ID] = true
		}
	}
	var out []string
	for _, c := range m.Chunks {
		if !used[c.ID] {
			out = append(out, filepath.Join(dir, "chunks", c.ID[:2], c.ID))
		}
	}
	return out
}

func flipByte(t *testing.T, path string, at int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at%len(b)] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreFallsBackFromDamage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	w := open(t, "sim", ckpt.WithDir(dir), ckpt.WithAsync(false), ckpt.WithCodec("none"))
	v1 := randFloats(10, 300000)
	data := append([]float64(nil), v1...)
	step := int64(1)
	protect(t, w, "data", data)
	protect(t, w, "step", &step)
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := w.LastCommit()
	copy(data, randFloats(11, len(data)))
	step = 2
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := w.LastCommit()
	w.Close()

	r, err := repo.OpenDir(ctx, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	m1, _ := r.Load(ctx, first.ID)
	m2, _ := r.Load(ctx, second.ID)
	files := chunkFiles(t, dir, m2, m1)
	if len(files) == 0 {
		t.Fatal("second checkpoint has no chunks of its own")
	}
	damaged := files[0]
	flipByte(t, damaged, 5000)

	j := open(t, "sim", ckpt.WithDir(dir))
	got := make([]float64, len(data))
	var gotStep int64
	protect(t, j, "data", got)
	protect(t, j, "step", &gotStep)
	info, err := j.Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Seq != 1 || gotStep != 1 || !reflect.DeepEqual(got, v1) {
		t.Fatalf("restored seq %d step %d equal %v, want the first checkpoint", info.Seq, gotStep, reflect.DeepEqual(got, v1))
	}
	if len(info.Skipped) != 1 || info.Skipped[0].Seq != 2 || info.Skipped[0].ID != second.ID {
		t.Fatalf("skipped %+v, want checkpoint 2", info.Skipped)
	}
	var ce *repo.CorruptError
	if !errors.As(info.Skipped[0].Err, &ce) || ce.Chunk != filepath.Base(damaged) || ce.Checkpoint != second.ID || ce.Object == "" {
		t.Fatalf("skip reason %v does not name the damaged chunk %s", info.Skipped[0].Err, filepath.Base(damaged))
	}
	if !errors.Is(info.Skipped[0].Err, ckpt.ErrCorrupt) {
		t.Fatal("skip reason does not wrap ErrCorrupt")
	}

	// The next checkpoint builds on the restored one, not the damaged one.
	gotStep = 3
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}
	c, _ := j.LastCommit()
	m3, err := r.Load(ctx, c.ID)
	if err != nil || m3.Parent != first.ID || c.Seq != 3 {
		t.Fatalf("third checkpoint: %v parent %s seq %d", err, m3.Parent, c.Seq)
	}

	// A deterministic program recomputes the damaged checkpoint's state
	// exactly: the new checkpoint must not share the damaged chunk.
	copy(got, data)
	gotStep = 2
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}
	c4, _ := j.LastCommit()
	m4, _ := r.Load(ctx, c4.ID)
	if err := r.Verify(ctx, m4, nil); err != nil {
		t.Fatalf("recomputed checkpoint refers to damaged data: %v", err)
	}

	// Damage everything of checkpoints 1 and 3: Restore fails and says so.
	for _, f := range append(chunkFiles(t, dir, m1, nil), chunkFiles(t, dir, m3, m1)...) {
		flipByte(t, f, 100)
	}
	for _, f := range chunkFiles(t, dir, m4, m1) {
		flipByte(t, f, 100)
	}
	j2 := open(t, "sim", ckpt.WithDir(dir))
	protect(t, j2, "data", got)
	protect(t, j2, "step", &gotStep)
	if _, err := j2.Restore(ctx); !errors.Is(err, ckpt.ErrCorrupt) {
		t.Fatalf("restore with every checkpoint damaged: %v", err)
	}
}

// A job that does not Restore still writes incrementally against the newest
// checkpoint; when that one is damaged it writes a full checkpoint instead
// of failing.
func TestCommitOverDamagedParent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	w := open(t, "p", ckpt.WithDir(dir), ckpt.WithAsync(false), ckpt.WithCodec("none"))
	data := randFloats(20, 200000)
	protect(t, w, "data", data)
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	c1, _ := w.LastCommit()
	w.Close()
	r, _ := repo.OpenDir(ctx, dir, nil, false)
	m1, _ := r.Load(ctx, c1.ID)
	for _, f := range chunkFiles(t, dir, m1, nil) {
		flipByte(t, f, 77)
	}
	j := open(t, "p", ckpt.WithDir(dir), ckpt.WithAsync(false))
	protect(t, j, "data", data)
	if err := j.Checkpoint(ctx); err != nil {
		t.Fatalf("checkpoint over a damaged parent: %v", err)
	}
	c2, _ := j.LastCommit()
	m2, _ := r.Load(ctx, c2.ID)
	if err := r.Verify(ctx, m2, nil); err != nil {
		t.Fatalf("new checkpoint does not verify: %v", err)
	}
}

func TestEncryptedDirRepository(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "enc")
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := open(t, "enc", ckpt.WithDir(dir), ckpt.WithKeyFile(keyFile))
	secret := []byte(strings.Repeat("top secret plaintext ", 1000))
	protect(t, w, "s", secret)
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("top secret")) {
			t.Errorf("%s holds plaintext", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ckpt.Open("enc", ckpt.WithDir(dir)); !errors.Is(err, repo.ErrKeyRequired) {
		t.Fatalf("open without key: %v", err)
	}
	r := open(t, "enc", ckpt.WithDir(dir), ckpt.WithKeyFile(keyFile))
	got := make([]byte, len(secret))
	protect(t, r, "s", got)
	if _, err := r.Restore(ctx); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("restore: %v", err)
	}
}

func TestGobRestoreClearsStaleFields(t *testing.T) {
	be := backend.NewMem()
	w := open(t, "gob", ckpt.WithBackend(be), ckpt.WithAsync(false))
	v := record{Name: "saved"} // Count and Tags are zero: gob does not send them
	protect(t, w, "r", &v)
	if err := w.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r := open(t, "gob", ckpt.WithBackend(be))
	got := record{Name: "stale", Count: 99, Tags: map[string]int{"stale": 1}}
	protect(t, r, "r", &got)
	if _, err := r.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("restored %+v, want %+v", got, v)
	}
}
