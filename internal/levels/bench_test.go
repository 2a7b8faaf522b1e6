package levels_test

import (
	"context"
	"io"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/klauspost/reedsolomon"
)

// The erasure benchmarks encode and rebuild a 64 MiB checkpoint of random
// data (1 MiB chunks, stored uncompressed) as k=4 m=2 with 1 MiB stripes,
// in memory, so that they measure ckpt's erasure path (packing, Reed-Solomon,
// a BLAKE3 sum per shard, framing) and not a disk. Bytes are the
// checkpoint's. BenchmarkReedSolomon4x2 is the library's own encode of the
// same shape, as its benchmarks measure it, for the ratio; run per core
// with -cpu 1 (docs/PERFORMANCE.md, "Levels and agent").
const (
	benchSize   = 64 << 20
	benchStripe = 1 << 20
)

func benchCheckpoint(b *testing.B) (backend.Backend, *repo.Manifest) {
	b.Helper()
	ctx := context.Background()
	src := backend.NewMem()
	r, err := repo.Init(ctx, src, repo.InitOptions{ChunkSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Name: "bench", Kind: repo.KindLibrary, Codec: repo.CodecNone})
	if err != nil {
		b.Fatal(err)
	}
	ow, _ := w.Create("grid", "bytes", nil)
	ow.Write(randBytes(42, benchSize))
	ow.Close()
	m, err := w.Commit(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return src, m
}

type discardSink struct{}

func (discardSink) PutFragment(ctx context.Context, name string, r io.Reader, size int64) error {
	n, err := io.Copy(io.Discard, r)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func BenchmarkErasureEncode(b *testing.B) {
	src, m := benchCheckpoint(b)
	in := levels.EncodeInput{Src: src, ID: m.ID(), Chunks: levels.ChunkIDs(m), Seq: m.Seq, K: 4, M: 2, Stripe: benchStripe}
	sinks := make([]levels.FragmentSink, 6)
	for i := range sinks {
		sinks[i] = discardSink{}
	}
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		if _, err := levels.Encode(context.Background(), in, sinks); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkErasureRebuild rebuilds the checkpoint from fragments 2..5 (two
// data fragments lost: every stripe needs a reconstruction).
func BenchmarkErasureRebuild(b *testing.B) {
	ctx := context.Background()
	src, m := benchCheckpoint(b)
	mem := &memSink{frags: map[string][]byte{}}
	sinks := []levels.FragmentSink{mem, mem, mem, mem, mem, mem}
	if _, err := levels.Encode(ctx, levels.EncodeInput{Src: src, ID: m.ID(), Chunks: levels.ChunkIDs(m), Seq: m.Seq, K: 4, M: 2, Stripe: benchStripe}, sinks); err != nil {
		b.Fatal(err)
	}
	delete(mem.frags, levels.FragmentName(m.ID(), 0))
	delete(mem.frags, levels.FragmentName(m.ID(), 1))
	refs, _ := levels.FindFragments(ctx, []levels.Holder{{Node: "mem", Src: mem}}, m.ID())
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		if _, _, err := levels.Decode(ctx, refs, m.ID(), backend.NewMem()); err != nil {
			b.Fatal(err)
		}
	}
}

// rsShards is a 4+2 encoder and its shards, data filled at random.
func rsShards(b *testing.B) (reedsolomon.Encoder, [][]byte) {
	enc, err := reedsolomon.New(4, 2)
	if err != nil {
		b.Fatal(err)
	}
	shards := make([][]byte, 6)
	for i := range shards {
		shards[i] = make([]byte, benchStripe)
		if i < 4 {
			copy(shards[i], randBytes(uint64(i), benchStripe))
		}
	}
	return enc, shards
}

func BenchmarkReedSolomon4x2(b *testing.B) {
	enc, shards := rsShards(b)
	b.SetBytes(4 * benchStripe) // data bytes, as the ckpt benchmarks count
	b.ResetTimer()
	for range b.N {
		if err := enc.Encode(shards); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReedSolomon4x2Reconstruct(b *testing.B) {
	enc, shards := rsShards(b)
	enc.Encode(shards)
	b.SetBytes(4 * benchStripe)
	b.ResetTimer()
	for range b.N {
		shards[0], shards[1] = nil, nil
		if err := enc.ReconstructData(shards); err != nil {
			b.Fatal(err)
		}
	}
}
