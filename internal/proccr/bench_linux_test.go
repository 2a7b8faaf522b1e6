package proccr_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/vfs"
)

// benchMiB is the fixture size (CKPT_BENCH_MIB, default 1024).
func benchMiB() int {
	if n, err := strconv.Atoi(os.Getenv("CKPT_BENCH_MIB")); err == nil && n > 0 {
		return n
	}
	return 1024
}

func benchRepo(b *testing.B) *repo.Repository {
	dir := b.TempDir()
	be, err := backend.CreateLocal(vfs.OS, dir+"/repo")
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(context.Background(), be, repo.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// memcpy copies size bytes through a 64 MiB buffer pair (larger than any
// cache) and returns the time: one memory copy of the process, measured in
// the same run.
func memcpy(size int) time.Duration {
	src, dst := make([]byte, 64<<20), make([]byte, 64<<20)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src)
	t0 := time.Now()
	for n := 0; n < size; n += len(src) {
		copy(dst, src)
	}
	return time.Since(t0)
}

// hwm resets (arg true) or reads this process's peak RSS in KiB.
func hwm(reset bool) int {
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		return 0
	}
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// BenchmarkPreCopy: a 1 GiB process rewriting 1 % of its pages per second
// (scattered 4 KiB pages) is dumped with --leave-running (pre-copy); the
// frozen time is compared with one memcpy of its size. Run with
// -benchtime=1x.
func BenchmarkPreCopy(b *testing.B) {
	proctest.RequireRoot(b)
	mib := benchMiB()
	bin := proctest.Build(b, "dirtier", false)
	for i := 0; i < b.N; i++ {
		r := benchRepo(b)
		p := proctest.Start(b, bin, strconv.Itoa(mib), "10")
		p.Lines.Expect(b, "READY")
		hwm(true)
		base := hwm(false)
		t0 := time.Now()
		res, err := proccr.Dump(context.Background(), r, p.PID, proccr.DumpOptions{Name: "dirtier", LeaveRunning: true})
		total := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		peak := hwm(false)
		cp := memcpy(mib << 20)
		st := res.Stats
		b.ReportMetric(float64(res.Frozen.Microseconds())/1000, "frozen-ms")
		b.ReportMetric(float64(cp.Microseconds())/1000, "memcpy-ms")
		b.ReportMetric(float64(res.Frozen)/float64(cp), "frozen/memcpy")
		b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
		b.Logf("%d MiB: dump %v total, arm stop %v, pre-copied %d MiB, frozen %v (memcpy %v: %.2fx), frozen pass read %d MiB, reused %d MiB; peak RSS %d MiB (%d MiB at start)",
			mib, total.Round(time.Millisecond), res.ArmStop, res.PreCopied>>20, res.Frozen, cp, float64(res.Frozen)/float64(cp),
			(st.Bytes-st.ReusedBytes)>>20, st.ReusedBytes>>20, peak>>10, base>>10)
		p.KillAndReap(b)
	}
}

// BenchmarkSecondDump: a --leave-running dump without pre-copy, 1 % of
// the pages rewritten at random, a second dump: its time and stored bytes
// against the first's. "separate" dumps as two ckpt dump runs do (the
// second compares every page's hash with the first's); "tracked" as ckpt
// run does (write trackers kept in the process from the first dump on,
// the second reads only the pages written since).
func BenchmarkSecondDump(b *testing.B) {
	proctest.RequireRoot(b)
	b.Run("separate", func(b *testing.B) { secondDump(b, nil) })
	b.Run("tracked", func(b *testing.B) {
		track := proccr.NewTracking()
		defer track.Close()
		secondDump(b, track)
	})
}

func secondDump(b *testing.B, track *proccr.Tracking) {
	mib := benchMiB()
	bin := proctest.Build(b, "dirtier", false)
	for i := 0; i < b.N; i++ {
		r := benchRepo(b)
		cmd := exec.Command(bin, strconv.Itoa(mib), "cmd")
		rd, w, _ := os.Pipe()
		cmd.Stdout = w
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		w.Close()
		lines := proctest.NewLines(rd)
		lines.Expect(b, "READY")
		opts := proccr.DumpOptions{Name: "dirtier", LeaveRunning: true, NoPreCopy: true, Tracking: track}
		t0 := time.Now()
		r1, err := proccr.Dump(context.Background(), r, cmd.Process.Pid, opts)
		d1 := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(in, "w %d\n", mib<<20/4096/100)
		lines.Expect(b, "DONE")
		t0 = time.Now()
		r2, err := proccr.Dump(context.Background(), r, cmd.Process.Pid, opts)
		d2 := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if track != nil && !r2.Tracked {
			b.Fatal("the second dump did not use the write trackers")
		}
		b.ReportMetric(d1.Seconds()*1000, "first-ms")
		b.ReportMetric(d2.Seconds()*1000, "second-ms")
		b.ReportMetric(d2.Seconds()/d1.Seconds(), "time-ratio")
		b.ReportMetric(float64(r2.Stats.StoredBytes)/float64(r1.Stats.StoredBytes), "stored-ratio")
		b.Logf("%d MiB: first dump %v (%d MiB stored), second after 1 %% of pages changed %v (%.2f MiB stored, %.2f MiB read while frozen %v): time %.2fx, bytes %.2f %%",
			mib, d1.Round(time.Millisecond), r1.Stats.StoredBytes>>20, d2.Round(time.Millisecond), float64(r2.Stats.StoredBytes)/(1<<20),
			float64(r2.Read)/(1<<20), r2.Frozen.Round(time.Millisecond), d2.Seconds()/d1.Seconds(), 100*float64(r2.Stats.StoredBytes)/float64(r1.Stats.StoredBytes))
	}
}
