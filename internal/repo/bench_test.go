package repo

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// benchSize is the data written per benchmark iteration.
const benchSize = 256 << 20

// BenchmarkCommitLocal measures commit throughput of incompressible data
// into a local repository, chunks fsynced. Compare with BenchmarkRawWrite
// (same directory, same bytes, one fsynced file) in the same run.
func BenchmarkCommitLocal(b *testing.B) {
	for _, kind := range []string{"random", "compressible"} {
		b.Run(kind, func(b *testing.B) {
			data := randBytes(1, benchSize)
			if kind == "compressible" {
				// Half of every 256-byte stretch repeats: about 2:1 for s2.
				for i := 0; i < len(data); i += 256 {
					copy(data[i+128:i+256], data[i:i+128])
				}
			}
			dir := b.TempDir()
			b.SetBytes(benchSize)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				data[0]++ // a new checkpoint each time, no dedup of the first chunk
				b.StopTimer()
				r, err := InitDir(context.Background(), filepath.Join(dir, string(rune('a'+i%26)), "r"), InitOptions{})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				w, _ := r.NewWriter(context.Background(), WriterOptions{Name: "b", Kind: KindLibrary})
				ow, _ := w.Create("x", "bytes", nil)
				if _, err := ow.Write(data); err != nil {
					b.Fatal(err)
				}
				if _, err := w.Commit(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(filepath.Join(dir, string(rune('a'+i%26))))
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRawWrite is the raw sequential write bandwidth of the same
// directory: one file, written in 1 MiB writes, fsynced.
func BenchmarkRawWrite(b *testing.B) {
	data := randBytes(1, benchSize)
	dir := b.TempDir()
	b.SetBytes(benchSize)
	for i := 0; i < b.N; i++ {
		f, err := os.Create(filepath.Join(dir, "raw"))
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(data); off += 1 << 20 {
			f.Write(data[off : off+1<<20])
		}
		f.Sync()
		f.Close()
		b.StopTimer()
		os.Remove(filepath.Join(dir, "raw"))
		b.StartTimer()
	}
}

// BenchmarkRead measures reading an object back (hash check included).
func BenchmarkRead(b *testing.B) {
	data := randBytes(1, 64<<20)
	r, _ := InitDir(context.Background(), filepath.Join(b.TempDir(), "r"), InitOptions{})
	w, _ := r.NewWriter(context.Background(), WriterOptions{Name: "b", Kind: KindLibrary})
	ow, _ := w.Create("x", "bytes", nil)
	ow.Write(data)
	m, _ := w.Commit(context.Background())
	buf := make([]byte, 4<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		or, _ := r.OpenObject(m, "x")
		for off := uint64(0); off < uint64(len(data)); off += uint64(len(buf)) {
			if _, err := or.ReadAt(context.Background(), buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkParallelSegments measures what a restore does with a process's
// memory: every chunk read into reused buffers, re-hashed and handed out,
// by one worker per CPU (fn copies the bytes, as process_vm_writev does).
func BenchmarkParallelSegments(b *testing.B) {
	data := randBytes(1, 64<<20)
	r, _ := InitDir(context.Background(), filepath.Join(b.TempDir(), "r"), InitOptions{})
	w, _ := r.NewWriter(context.Background(), WriterOptions{Name: "b", Kind: KindProcess})
	ow, _ := w.Create("mem", "memory", nil)
	ow.WriteAt(data, 0)
	m, _ := w.Commit(context.Background())
	dst := make([]byte, len(data))
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		or, _ := r.OpenObject(m, "mem")
		err := or.ParallelSegments(context.Background(), runtime.GOMAXPROCS(0), func(off uint64, p []byte) error {
			copy(dst[off:], p)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFromParent measures an incremental write of 64 MiB with 1 %
// of its pages changed: every page read (a copy here) and hashed on every
// CPU, compared with the parent's block table, the changed ones stored.
func BenchmarkWriteFromParent(b *testing.B) {
	ctx := context.Background()
	data := randBytes(1, 64<<20)
	r, _ := InitDir(ctx, filepath.Join(b.TempDir(), "r"), InitOptions{})
	w, _ := r.NewWriter(ctx, WriterOptions{Name: "b", Kind: KindProcess})
	ow, _ := w.Create("mem", "memory", nil)
	ow.WriteAt(data, 0)
	parent, _ := w.Commit(ctx)
	for p := 0; p < len(data)/BlockSize; p += 100 {
		data[p*BlockSize] ^= 1
	}
	fill := func(off uint64, p []byte) error { copy(p, data[off:]); return nil }
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, _ := r.NewWriter(ctx, WriterOptions{Name: "b", Kind: KindProcess, Parent: parent})
		ow, _ := w.Create("mem", "memory", nil)
		if err := ow.WriteFrom(0, len(data), fill); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
