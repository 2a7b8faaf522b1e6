// Command proc benchmarks transparent dump and restore: a C program fills
// N MiB with random bytes, ckpt dumps it (killing it) and restores it, and
// the program checks its memory (the run fails unless it prints PASS). It
// prints a Markdown table with dump and restore times (median and range),
// image bytes and ckpt's peak RSS, beside raw dd bandwidth to the same
// directory, and, when --criu is given, CRIU's times for the same program
// in the same repetition and the ckpt/CRIU ratios of the medians.
//
//	go build -o /tmp/ckpt ./cmd/ckpt
//	go run ./bench/proc --ckpt /tmp/ckpt --sizes 64,1024 --dirs /dev/shm,/var/tmp
//	go run ./bench/proc --ckpt /tmp/ckpt --criu /path/to/criu --reps 3
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckpt/ckpt/bench/internal/machine"
	"github.com/ckpt/ckpt/bench/internal/stats"
)

// ckptCodec is passed to ckpt dump --codec.
var ckptCodec string

func main() {
	ckptBin := flag.String("ckpt", "ckpt", "ckpt binary")
	criu := flag.String("criu", "", "CRIU binary to compare with (optional)")
	sizes := flag.String("sizes", "64,1024", "memory sizes in MiB (one process each)")
	shapes := flag.String("shapes", "", "process trees as NPROCxMIB (MiB per process), e.g. 1x200,50x4; replaces --sizes")
	redis := flag.Int("redis", 0, "also dump and restore redis-server holding this many MiB of values (0: no)")
	redisBin := flag.String("redis-server", "/usr/bin/redis-server", "redis-server binary for --redis")
	dirs := flag.String("dirs", "/dev/shm,/var/tmp", "directories for the repository")
	reps := flag.Int("reps", 3, "repetitions (median reported)")
	flag.StringVar(&ckptCodec, "codec", "auto", "ckpt dump --codec")
	flag.Parse()

	// Restored programs are detached: as a subreaper this process becomes
	// their parent, reaps them at once and sees how they exited (PID 1 of
	// the VM reaps orphans only every ~1.5 s).
	check(unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	work, err := os.MkdirTemp("", "ckpt-bench-")
	check(err)
	defer os.RemoveAll(work)
	_, file, _, _ := runtime.Caller(0)
	memfill := filepath.Join(work, "memfill")
	out, err := exec.Command("gcc", "-O2", "-o", memfill, filepath.Join(filepath.Dir(file), "testdata", "memfill.c")).CombinedOutput()
	if err != nil {
		fail("gcc: %v: %s", err, out)
	}
	var trees []shape
	if *shapes != "" {
		for _, s := range strings.Split(*shapes, ",") {
			n, m, ok := strings.Cut(s, "x")
			np, err1 := strconv.Atoi(n)
			mib, err2 := strconv.Atoi(m)
			if !ok || err1 != nil || err2 != nil || np < 1 || mib < 1 {
				fail("--shapes: %q is not NPROCxMIB", s)
			}
			trees = append(trees, shape{np, mib})
		}
	} else {
		for _, s := range strings.Split(*sizes, ",") {
			mib, err := strconv.Atoi(s)
			check(err)
			trees = append(trees, shape{1, mib})
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, kernel %s, load average %s\n\n", host, runtime.NumCPU(), machine.Kernel(), machine.Load())
	var rows []string
	for _, d := range strings.Split(*dirs, ",") {
		// The shapes take turns within a repetition, so that the ratios
		// between them (per-process overhead) come from the same minute.
		res := make([]result, len(trees))
		for i := 0; i < *reps; i++ {
			for j, t := range trees {
				r := &res[j]
				r.dd = append(r.dd, ddWrite(d, t.total()))
				t1, t2, size, r1, r2 := runCkpt(*ckptBin, memfill, d, t)
				r.dump, r.rest, r.img = append(r.dump, t1), append(r.rest, t2), size
				r.rssD, r.rssR = max(r.rssD, r1), max(r.rssR, r2)
				line := fmt.Sprintf("rep %d: %s %s: dd %s, ckpt dump %s restore %s", i+1, t, d, secs(r.dd[i]), secs(t1), secs(t2))
				if *criu != "" {
					c1, cs, c2, size := runCRIU(*criu, memfill, d, t)
					r.cd, r.cds, r.cr, r.cimg = append(r.cd, c1), append(r.cds, cs), append(r.cr, c2), size
					line += fmt.Sprintf(", CRIU dump %s (%s with fsync) restore %s (ratio %.2f, %.2f against fsynced / %.2f)", secs(c1), secs(cs), secs(c2),
						t1.Seconds()/c1.Seconds(), t1.Seconds()/cs.Seconds(), t2.Seconds()/c2.Seconds())
				}
				fmt.Fprintf(os.Stderr, "%s [load %s]\n", line, machine.Load())
			}
		}
		for j, t := range trees {
			rows = append(rows, res[j].row(t.String(), d, *criu != ""))
		}
		overheads(trees, res, d, *criu != "")
		if *redis > 0 {
			var r result
			for i := 0; i < *reps; i++ {
				t1, t2, size, r1, r2 := runRedisCkpt(*ckptBin, *redisBin, d, *redis)
				r.dump, r.rest, r.img = append(r.dump, t1), append(r.rest, t2), size
				r.rssD, r.rssR = max(r.rssD, r1), max(r.rssR, r2)
				line := fmt.Sprintf("rep %d: redis %d MiB %s: ckpt dump %s restore %s", i+1, *redis, d, secs(t1), secs(t2))
				if *criu != "" {
					c1, c2, size := runRedisCRIU(*criu, *redisBin, d, *redis)
					r.cd, r.cr, r.cimg = append(r.cd, c1), append(r.cr, c2), size
					line += fmt.Sprintf(", CRIU dump %s restore %s (ratio %.2f / %.2f)", secs(c1), secs(c2), t1.Seconds()/c1.Seconds(), t2.Seconds()/c2.Seconds())
				}
				fmt.Fprintf(os.Stderr, "%s [load %s]\n", line, machine.Load())
			}
			rows = append(rows, r.row(fmt.Sprintf("redis %d MiB", *redis), d, *criu != ""))
		}
	}
	fmt.Println("Times are median (min–max) of", *reps, "runs; ckpt chunks are fsynced, CRIU's images are not (\"CRIU dump + fsync\" fsyncs them after its dump).")
	fmt.Println()
	fmt.Print("| memory | repo on | dd (fsync) | ckpt dump | ckpt restore | ckpt image | ckpt peak RSS (dump / restore) |")
	if *criu != "" {
		fmt.Print(" CRIU dump | CRIU dump + fsync | CRIU restore | CRIU image | ratio dump | ratio dump, both fsynced | ratio restore |")
	}
	fmt.Println()
	fmt.Print("|---|---|---|---|---|---|---|")
	if *criu != "" {
		fmt.Print("---|---|---|---|---|---|---|")
	}
	fmt.Println()
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("\nload average at the end: %s\n", machine.Load())
}

// shape is a tree of n processes that each fill mib MiB.
type shape struct{ n, mib int }

func (s shape) total() int { return s.n * s.mib }

func (s shape) String() string {
	if s.n == 1 {
		return fmt.Sprintf("%d MiB", s.mib)
	}
	return fmt.Sprintf("%d × %d MiB", s.n, s.mib)
}

// result holds one row's repetitions.
type result struct {
	dd, dump, rest, cd, cr []time.Duration
	cds                    []time.Duration // CRIU dump + fsync of its images
	img, cimg, rssD, rssR  int64
}

func (r *result) row(what, dir string, criu bool) string {
	dd := "–"
	if len(r.dd) > 0 {
		dd = secs(stats.Median(r.dd))
	}
	row := fmt.Sprintf("| %s | %s | %s | %s | %s | %d MiB | %d / %d MiB |",
		what, dir, dd, spread(r.dump), spread(r.rest), r.img>>20, r.rssD>>20, r.rssR>>20)
	if criu {
		synced, ratio := "–", "–"
		if len(r.cds) > 0 {
			synced = spread(r.cds)
			ratio = fmt.Sprintf("%.2f", stats.Median(r.dump).Seconds()/stats.Median(r.cds).Seconds())
		}
		row += fmt.Sprintf(" %s | %s | %s | %d MiB | **%.2f** | %s | **%.2f** |", spread(r.cd), synced, spread(r.cr), r.cimg>>20,
			stats.Median(r.dump).Seconds()/stats.Median(r.cd).Seconds(), ratio, stats.Median(r.rest).Seconds()/stats.Median(r.cr).Seconds())
	}
	return row
}

// overheads prints, for each pair of shapes with the same total memory and
// different process counts, what each further process adds to dump and
// restore: the difference of the two trees' times divided by the
// difference of their process counts, per repetition (the shapes ran in
// turn within one), as median (min–max).
func overheads(trees []shape, res []result, dir string, criu bool) {
	per := func(a, b []time.Duration, n int) string {
		var ds []time.Duration
		for i := range a {
			ds = append(ds, (b[i]-a[i])/time.Duration(n))
		}
		med, lo, hi := stats.Spread(ds)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		return fmt.Sprintf("%.1f ms (%.1f–%.1f)", ms(med), ms(lo), ms(hi))
	}
	for i, a := range trees {
		for j, b := range trees {
			if a.total() != b.total() || a.n >= b.n {
				continue
			}
			n := b.n - a.n
			line := fmt.Sprintf("%s: each process added (%s → %s): ckpt dump %s, restore %s", dir, a, b,
				per(res[i].dump, res[j].dump, n), per(res[i].rest, res[j].rest, n))
			if criu {
				line += fmt.Sprintf("; CRIU dump %s, restore %s", per(res[i].cd, res[j].cd, n), per(res[i].cr, res[j].cr, n))
			}
			fmt.Println(line)
		}
	}
}

// spread formats the median and the range of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 1 {
		return secs(ds[0])
	}
	med, lo, hi := stats.Spread(ds)
	return fmt.Sprintf("%s (%.2f–%.2f)", secs(med), lo.Seconds(), hi.Seconds())
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// ddWrite is the raw sequential write bandwidth: dd with fsync.
func ddWrite(dir string, mib int) time.Duration {
	f := filepath.Join(dir, "ckpt-bench-dd")
	defer os.Remove(f)
	t := time.Now()
	out, err := exec.Command("dd", "if=/dev/zero", "of="+f, "bs=1M", fmt.Sprintf("count=%d", mib), "conv=fsync").CombinedOutput()
	if err != nil {
		fail("dd: %v: %s", err, out)
	}
	return time.Since(t)
}

// startFill starts the memory filler and waits for READY.
func startFill(memfill string, t shape) *exec.Cmd {
	cmd := exec.Command(memfill, strconv.Itoa(t.mib), strconv.Itoa(t.n))
	stdout, _ := cmd.StdoutPipe()
	check(cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY") {
		fail("memfill: %q %v", line, err)
	}
	return cmd
}

// timed runs a command and returns its wall time, peak RSS and stdout.
// Stdout is a file, not a pipe: a detached restore hands its stdout to the
// restored program, which would hold a pipe open.
func timed(name string, args ...string) (time.Duration, int64, string) {
	so, err := os.CreateTemp("", "ckpt-bench-stdout-")
	check(err)
	defer os.Remove(so.Name())
	defer so.Close()
	d, rss := timedTo(so, name, args...)
	out, _ := os.ReadFile(so.Name())
	return d, rss, string(out)
}

// timedTo runs a command with stdout to so and returns its wall time and
// peak RSS.
func timedTo(so *os.File, name string, args ...string) (time.Duration, int64) {
	cmd := exec.Command(name, args...)
	cmd.Stdout = so
	cmd.Stderr = os.Stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		fail("%s %v: %v", name, args, err)
	}
	d := time.Since(t)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return d, ru.Maxrss << 10
}

// newRepo makes a fresh repository under dir for one run; the caller
// removes it. It is created before the clock starts, as CRIU's image
// directory is: creating one is done once, not per dump (on this VM's ext4
// its 261 directories take ~0.2 s; see docs/PERFORMANCE.md).
func newRepo(bin, dir string) string {
	repo := filepath.Join(dir, "ckpt-bench-repo")
	os.RemoveAll(repo)
	if out, err := exec.Command(bin, "--repo", repo, "init").CombinedOutput(); err != nil {
		fail("ckpt init: %v: %s", err, out)
	}
	return repo
}

// newImages makes a fresh, empty CRIU image directory under dir for one
// run; the caller removes it.
func newImages(dir string) string {
	img := filepath.Join(dir, "criu-bench-img")
	os.RemoveAll(img)
	check(os.MkdirAll(img, 0o700))
	return img
}

// restoredPID is the PID on the first line of a detached restore's output.
func restoredPID(out string) int {
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
	if err != nil {
		fail("ckpt restore printed %q", out)
	}
	return pid
}

func runCkpt(bin, memfill, dir string, t shape) (time.Duration, time.Duration, int64, int64, int64) {
	repo := newRepo(bin, dir)
	defer os.RemoveAll(repo)
	cmd := startFill(memfill, t)
	td, rssD, _ := timed(bin, "--repo", repo, "dump", "--codec", ckptCodec, "--name", "bench", strconv.Itoa(cmd.Process.Pid))
	cmd.Wait()
	reapAll()
	size := duBytes(repo)
	// The restored program's stdout (the dumped one's was a pipe to us) is
	// restore's: a file read after it exits.
	out := filepath.Join(dir, "ckpt-bench.out")
	so, err := os.Create(out)
	check(err)
	defer os.Remove(out)
	defer so.Close()
	tr, rssR := timedTo(so, bin, "--repo", repo, "restore", "--detach", "--stdout", out, "bench")
	b, _ := os.ReadFile(out)
	finish(restoredPID(string(b)), out, "ckpt")
	return td, tr, size, rssD, rssR
}

// finish lets a restored memfill check its memory, reaps it and checks
// that it printed PASS into out. The signal is repeated until the program
// exits: one that lands while the restorer is finishing can run the handler
// just before pause() is re-executed, which then sleeps for good.
func finish(pid int, out, who string) {
	var ws unix.WaitStatus
	for {
		check(syscall.Kill(pid, syscall.SIGUSR2))
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR || (err == nil && got == 0) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			// Not our child (no subreaper): wait for it to go.
			waitGone(pid)
		}
		break
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "PASS") || (ws.Exited() && ws.ExitStatus() != 0) || ws.Signaled() {
		fail("%s: restored program %d did not pass (status %#x): %q", who, pid, int(ws), b)
	}
}

// runCRIU returns CRIU's dump time, the dump time with its images fsynced
// after, its restore time and its image size.
func runCRIU(criu, memfill, dir string, t shape) (time.Duration, time.Duration, time.Duration, int64) {
	img := newImages(dir)
	defer os.RemoveAll(img)
	// A session of its own, stdio to a file: CRIU then needs no
	// --shell-job and restores the stdout file at its offset. setsid does
	// not fork here (the child of a Go program is no group leader), so the
	// PID is memfill's; the restore below checks that by reaping it.
	logf := filepath.Join(dir, "criu-bench.out")
	defer os.Remove(logf)
	f, err := os.Create(logf)
	check(err)
	cmd := exec.Command(memfill, strconv.Itoa(t.mib), strconv.Itoa(t.n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stdin, cmd.Stderr = f, nil, f
	check(cmd.Start())
	f.Close()
	for {
		b, _ := os.ReadFile(logf)
		if strings.Contains(string(b), "READY") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	// dump kills the process after writing its images (no --leave-running).
	td, _, _ := timed(criu, "dump", "-t", strconv.Itoa(pid), "-D", img, "-o", "dump.log")
	// CRIU does not fsync its images; ckpt does. Making them durable
	// afterwards gives the durable-against-durable figure.
	t0 := time.Now()
	syncTree(img)
	tds := td + time.Since(t0)
	cmd.Wait()
	reapAll()
	size := duBytes(img)
	// -d: criu exits once the tree runs; we (a subreaper) inherit it.
	tr, _, _ := timed(criu, "restore", "-D", img, "-d", "-o", "restore.log")
	finish(pid, logf, "CRIU")
	return td, tds, tr, size
}

// syncTree fsyncs every file under dir, then dir.
func syncTree(dir string) {
	check(filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	}))
	d, err := os.Open(dir)
	check(err)
	check(d.Sync())
	d.Close()
}

func duBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// reapAll reaps the children of a killed tree: as a subreaper this
// process inherits them, and their zombies hold the PIDs the restore needs.
// It runs when no other child of ours is alive.
func reapAll() {
	for {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(-1, &ws, 0, nil); err == unix.ECHILD {
			return
		} else if err != nil && err != unix.EINTR {
			fail("wait4: %v", err)
		}
	}
}

func waitGone(pid int) {
	for i := 0; i < 2000; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...)
	os.Exit(1)
}
