package ckpt_test

import (
	"path/filepath"
	"testing"

	"github.com/ckpt/ckpt"
)

// Hot-path benchmarks on 64 MiB; bench/lib measures the whole system at
// 1 GiB against copy and raw-write baselines.
const benchWords = 8 << 20 // 64 MiB of float64

// touchPages changes one value in every 4 KiB page, so each checkpoint is
// a full one.
func touchPages(data []float64, k int) {
	for i := 0; i < len(data); i += 512 {
		data[i] = float64(k)
	}
}

// BenchmarkCheckpointBlocking: how long an async Checkpoint holds the
// caller (the staging copy); the commit runs outside the timer.
func BenchmarkCheckpointBlocking(b *testing.B) {
	j := open(b, "bench", ckpt.WithDir(filepath.Join(b.TempDir(), "repo")), ckpt.WithKeep(1))
	data := randFloats(1, benchWords)
	protect(b, j, "data", data)
	b.SetBytes(int64(len(data)) * 8)
	k := 0
	for b.Loop() {
		b.StopTimer()
		if err := j.Wait(); err != nil {
			b.Fatal(err)
		}
		k++
		touchPages(data, k)
		b.StartTimer()
		if err := j.Checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := j.Wait(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCopyBaseline is the copy BenchmarkCheckpointBlocking compares
// with.
func BenchmarkCopyBaseline(b *testing.B) {
	data := randFloats(1, benchWords)
	dst := make([]float64, len(data))
	b.SetBytes(int64(len(data)) * 8)
	for b.Loop() {
		copy(dst, data)
	}
}

// BenchmarkCommit: a synchronous full checkpoint into a local repository
// (hash, compression attempt, write, fsync, commit).
func BenchmarkCommit(b *testing.B) {
	for _, kind := range []string{"random", "compressible"} {
		b.Run(kind, func(b *testing.B) {
			j := open(b, "bench", ckpt.WithDir(filepath.Join(b.TempDir(), "repo")), ckpt.WithAsync(false), ckpt.WithKeep(1))
			data := randFloats(1, benchWords)
			if kind == "compressible" {
				for i := range data {
					data[i] = float64(int(data[i]*4) / 4)
				}
			}
			protect(b, j, "data", data)
			b.SetBytes(int64(len(data)) * 8)
			k := 0
			for b.Loop() {
				k++
				touchPages(data, k)
				if err := j.Checkpoint(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRestore: reading, checking and decoding a checkpoint into the
// protected slice.
func BenchmarkRestore(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "repo")
	w := open(b, "bench", ckpt.WithDir(dir), ckpt.WithAsync(false))
	data := randFloats(1, benchWords)
	protect(b, w, "data", data)
	if err := w.Checkpoint(ctx); err != nil {
		b.Fatal(err)
	}
	r := open(b, "bench", ckpt.WithDir(dir), ckpt.WithLogger(discardLogger()))
	got := make([]float64, len(data))
	protect(b, r, "data", got)
	b.SetBytes(int64(len(data)) * 8)
	for b.Loop() {
		if _, err := r.Restore(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
