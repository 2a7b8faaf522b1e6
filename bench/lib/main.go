// Command lib measures the ckpt library as a whole on this machine and
// prints the ratios docs/PERFORMANCE.md reports: the blocking time of an
// async Checkpoint against one copy of the protected slice, the commit
// throughput against raw sequential write+fsync bandwidth of the same
// directory, the new data an incremental checkpoint writes, peak RSS, and
// Restore throughput. It is not run by CI: with the default 1 GiB it needs
// about 3 GiB of memory and several GiB of disk.
//
//	go run ./bench/lib -dir /var/tmp/ckpt-bench -size 1GiB
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/bench/internal/machine"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/zeebo/xxh3"
)

type options struct {
	dir     string
	size    int64
	data    string
	changed float64
	keep    bool
	json    bool
	codec   string
	prof    string
	rounds  int
	settle  time.Duration
	chunk   int64
}

func main() {
	var o options
	var size string
	flag.StringVar(&o.dir, "dir", "", "directory for the repository and the raw-write file (default: a new one under $TMPDIR)")
	flag.StringVar(&size, "size", "1GiB", "protected data size (KiB, MiB, GiB suffixes)")
	flag.StringVar(&o.data, "data", "random,compressible", "data kinds to measure: random, compressible")
	flag.Float64Var(&o.changed, "changed", 0.01, "fraction of 4 KiB pages changed before the incremental checkpoint")
	flag.StringVar(&o.codec, "codec", "auto", "chunk codec: auto, none, s2, zstd")
	flag.BoolVar(&o.keep, "keep", false, "keep the repository afterwards")
	flag.BoolVar(&o.json, "json", false, "print results as JSON")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "pause before each raw write and each full commit, so that neither pays for the write-back of the other")
	var chunk string
	flag.StringVar(&chunk, "chunk", "", "create the repository with this chunk size (default: the repository default)")
	flag.IntVar(&o.rounds, "rounds", 3, "full checkpoints (each after a raw write) per data kind")
	flag.StringVar(&o.prof, "cpuprofile", "", "write a CPU profile of the checkpoints to this file")
	flag.Parse()
	var err error
	if o.size, err = parseSize(size); err != nil {
		fmt.Fprintln(os.Stderr, "lib:", err)
		os.Exit(2)
	}
	if chunk != "" {
		if o.chunk, err = parseSize(chunk); err != nil {
			fmt.Fprintln(os.Stderr, "lib:", err)
			os.Exit(2)
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "lib:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suf, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suf) {
			s, mult = strings.TrimSuffix(s, suf), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func run(o options) error {
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ckpt-bench-")
		if err != nil {
			return err
		}
		dir = d
		defer os.RemoveAll(d)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fmt.Printf("command: %s\n", strings.Join(os.Args, " "))
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s, kernel %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), machine.Kernel())
	var results []Result
	for _, kind := range strings.Split(o.data, ",") {
		r, err := measure(o, dir, kind)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		results = append(results, r)
		if !o.json {
			print(r)
		}
	}
	if o.json {
		return json.NewEncoder(os.Stdout).Encode(results)
	}
	return nil
}

func fill(kind string, seed uint64, s []float64) {
	r := rand.New(rand.NewPCG(seed, 42))
	switch kind {
	case "random":
		for i := range s {
			s[i] = r.NormFloat64()
		}
	case "compressible":
		// A quantised field: small integers, runs of equal values.
		v := 0.0
		for i := range s {
			if i%16 == 0 {
				v = float64(r.IntN(16))
			}
			s[i] = v
		}
	}
}

// Result holds one data kind's measurements. Disk bandwidth on a shared
// machine drifts, so raw writes and commits are interleaved round by round
// and ratios are taken per round; the median round is reported.
type Result struct {
	Data      string    `json:"data"`
	Bytes     int64     `json:"bytes"`
	CopyS     float64   `json:"copy_s"`       // one copy() of the slice into touched memory (best of 3)
	Block1S   float64   `json:"block1_s"`     // first Checkpoint: staging buffer allocated and faulted in
	BlockS    []float64 `json:"block_s"`      // later Checkpoints: staging buffer reused
	BlockRat  float64   `json:"block_ratio"`  // median(BlockS) / CopyS
	RawWriteS []float64 `json:"raw_write_s"`  // write+fsync of the same size, same directory, before each commit
	CommitS   []float64 `json:"commit_s"`     // background commit of a full checkpoint (every page changed)
	CommitRat float64   `json:"commit_ratio"` // median over rounds of raw time / commit time
	Stored    int64     `json:"stored_bytes"` // on disk after compression, full checkpoint
	IncrNew   int64     `json:"incr_new_bytes"`
	IncrStore int64     `json:"incr_stored_bytes"`
	IncrRat   float64   `json:"incr_ratio"` // IncrNew / Bytes
	IncrS     float64   `json:"incr_commit_s"`
	PeakRSS   int64     `json:"peak_rss"` // during the checkpoints, after a reset
	RestoreS  float64   `json:"restore_s"`
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func measure(o options, dir, kind string) (Result, error) {
	if kind != "random" && kind != "compressible" {
		return Result{}, fmt.Errorf("unknown data kind %q", kind)
	}
	ctx := context.Background()
	n := int(o.size / 8)
	res := Result{Data: kind, Bytes: int64(n) * 8}
	data := make([]float64, n)
	fill(kind, 1, data)

	// (a) baseline: one copy into memory that is already faulted in.
	dst := make([]float64, n)
	copy(dst, data)
	res.CopyS = 1e9
	for range 3 {
		t := time.Now()
		copy(dst, data)
		res.CopyS = min(res.CopyS, time.Since(t).Seconds())
	}
	dst = nil
	_ = dst
	runtime.GC()
	debug.FreeOSMemory()

	repoDir := filepath.Join(dir, "repo-"+kind)
	os.RemoveAll(repoDir)
	if !o.keep {
		defer os.RemoveAll(repoDir)
	}
	if o.prof != "" {
		f, err := os.Create(o.prof + "." + kind)
		if err != nil {
			return res, err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if o.chunk > 0 {
		r, err := repo.InitDir(ctx, repoDir, repo.InitOptions{ChunkSize: int(o.chunk)})
		if err != nil {
			return res, err
		}
		r.Close()
	}
	resetPeakRSS()
	job, err := ckpt.Open("bench", ckpt.WithDir(repoDir), ckpt.WithCodec(o.codec), ckpt.WithKeep(2), ckpt.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return res, err
	}
	defer job.Close()
	if err := job.Protect("data", &data); err != nil {
		return res, err
	}
	checkpoint := func() (time.Duration, ckpt.CommitInfo, error) {
		t := time.Now()
		if err := job.Checkpoint(ctx); err != nil {
			return 0, ckpt.CommitInfo{}, err
		}
		blocked := time.Since(t)
		err := job.Wait()
		c, _ := job.LastCommit()
		return blocked, c, err
	}
	var ratios []float64
	for round := range o.rounds {
		// (b) baseline: sequential write + fsync of the same size. On a
		// virtual disk a large write is followed by seconds of write-back
		// below the guest, which slows whatever writes next: let it settle
		// before each measurement.
		time.Sleep(o.settle)
		raw, err := rawWrite(dir, res.Bytes)
		if err != nil {
			return res, err
		}
		if round > 0 {
			fill(kind, uint64(round)+1, data) // every page changes: a full commit
		}
		time.Sleep(o.settle)
		b, c, err := checkpoint()
		if err != nil {
			return res, err
		}
		if round == 0 {
			res.Block1S, res.Stored = b.Seconds(), c.StoredBytes
		} else {
			res.BlockS = append(res.BlockS, b.Seconds())
		}
		res.RawWriteS = append(res.RawWriteS, raw)
		res.CommitS = append(res.CommitS, c.Duration.Seconds())
		ratios = append(ratios, raw/c.Duration.Seconds())
	}
	res.BlockRat = median(res.BlockS) / res.CopyS
	res.CommitRat = median(ratios)

	// (c) incremental: rewrite a fraction of the 4 KiB pages, at random.
	pages := n / 512
	r := rand.New(rand.NewPCG(3, 3))
	changed := int(float64(pages) * o.changed)
	for _, p := range r.Perm(pages)[:changed] {
		page := data[p*512 : (p+1)*512]
		fill(kind, uint64(p)+10, page)
		page[0] = r.NormFloat64() // certainly different from before
	}
	_, c3, err := checkpoint()
	if err != nil {
		return res, err
	}
	res.IncrNew, res.IncrStore, res.IncrS = c3.NewBytes, c3.StoredBytes, c3.Duration.Seconds()
	res.IncrRat = float64(res.IncrNew) / float64(res.Bytes)
	res.PeakRSS = peakRSS()

	// Restore into the same slice, cleared, and check it.
	want := xxh3.Hash(floatBytes(data))
	clear(data)
	if err := job.Close(); err != nil {
		return res, err
	}
	rj, err := ckpt.Open("bench", ckpt.WithDir(repoDir), ckpt.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return res, err
	}
	defer rj.Close()
	if err := rj.Protect("data", &data); err != nil {
		return res, err
	}
	t := time.Now()
	if _, err := rj.Restore(ctx); err != nil {
		return res, err
	}
	res.RestoreS = time.Since(t).Seconds()
	if xxh3.Hash(floatBytes(data)) != want {
		return res, fmt.Errorf("restored data differs")
	}
	return res, nil
}

// rawWrite writes size bytes of random data to a file in dir in 1 MiB
// writes and fsyncs it: the bandwidth a commit competes with.
var verbose = os.Getenv("CKPT_BENCH_VERBOSE") != ""

func rawWrite(dir string, size int64) (float64, error) {
	buf := make([]byte, 16<<20)
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i+8 <= len(buf); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			buf[i+k] = byte(v >> (8 * k))
		}
	}
	p := filepath.Join(dir, "raw-write")
	defer os.Remove(p)
	t := time.Now()
	f, err := os.Create(p)
	if err != nil {
		return 0, err
	}
	for off := int64(0); off < size; off += 1 << 20 {
		o := int(off % int64(len(buf)))
		if _, err := f.Write(buf[o : o+1<<20]); err != nil {
			f.Close()
			return 0, err
		}
	}
	tw := time.Since(t)
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "raw write: written %.3fs, synced %.3fs\n", tw.Seconds(), time.Since(t).Seconds())
	}
	return time.Since(t).Seconds(), f.Close()
}

// resetPeakRSS resets the kernel's high-water mark of this process
// (clear_refs 5), so baselines measured before do not count.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func print(r Result) {
	gib := float64(r.Bytes) / (1 << 30)
	mbs := func(s float64) float64 { return float64(r.Bytes) / s / 1e6 }
	secs := func(xs []float64) string {
		var b strings.Builder
		for i, x := range xs {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%.3f", x)
		}
		return b.String()
	}
	fmt.Printf("\n== %s data, %.2f GiB ([]float64)\n", r.Data, gib)
	fmt.Printf("(a) copy(): %.3fs; Checkpoint blocked [%s]s -> ratio %.2f (first checkpoint, staging allocated: %.3fs, %.2fx)\n",
		r.CopyS, secs(r.BlockS), r.BlockRat, r.Block1S, r.Block1S/r.CopyS)
	fmt.Printf("(b) raw write+fsync [%s]s; commit [%s]s; stored %.1f%% -> ratio raw/commit %.2f (median of rounds; commit %.0f MB/s)\n",
		secs(r.RawWriteS), secs(r.CommitS), 100*float64(r.Stored)/float64(r.Bytes), r.CommitRat, mbs(median(r.CommitS)))
	fmt.Printf("(c) incremental: %.2f MiB new (%.2f%% of the data), %.2f MiB stored, commit %.3fs\n",
		float64(r.IncrNew)/(1<<20), 100*r.IncrRat, float64(r.IncrStore)/(1<<20), r.IncrS)
	fmt.Printf("peak RSS %.2f GiB (%.2fx the protected data); restore %.3fs (%.0f MB/s)\n",
		float64(r.PeakRSS)/(1<<30), float64(r.PeakRSS)/float64(r.Bytes), r.RestoreS, mbs(r.RestoreS))
}
