// Command proc benchmarks transparent dump and restore: a C program fills
// N MiB with random bytes, ckpt dumps it (killing it) and restores it, and
// the program checks its memory. It prints a Markdown table with dump and
// restore time, GiB/s, image bytes and ckpt's peak RSS, beside raw dd
// bandwidth to the same directory, and CRIU's when --criu is given.
//
//	go build -o /tmp/ckpt ./cmd/ckpt
//	go run ./bench/proc --ckpt /tmp/ckpt --sizes 64,1024 --dirs /dev/shm,/var/tmp
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
)

func main() {
	ckptBin := flag.String("ckpt", "ckpt", "ckpt binary")
	criu := flag.String("criu", "", "CRIU binary to compare with (optional)")
	sizes := flag.String("sizes", "64,1024", "memory sizes in MiB")
	dirs := flag.String("dirs", "/dev/shm,/var/tmp", "directories for the repository")
	reps := flag.Int("reps", 3, "repetitions (median reported)")
	flag.Parse()

	work, err := os.MkdirTemp("", "ckpt-bench-")
	check(err)
	defer os.RemoveAll(work)
	_, file, _, _ := runtime.Caller(0)
	memfill := filepath.Join(work, "memfill")
	out, err := exec.Command("gcc", "-O2", "-o", memfill, filepath.Join(filepath.Dir(file), "testdata", "memfill.c")).CombinedOutput()
	if err != nil {
		fail("gcc: %v: %s", err, out)
	}
	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, kernel %s\n\n", host, runtime.NumCPU(), kernel())
	fmt.Println("| memory | repo on | dd write | ckpt dump | ckpt restore | image | ckpt peak RSS (dump/restore) | CRIU dump | CRIU restore |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, d := range strings.Split(*dirs, ",") {
		for _, s := range strings.Split(*sizes, ",") {
			mib, err := strconv.Atoi(s)
			check(err)
			var dd, dump, rest, cd, cr []time.Duration
			var img int64
			var rssD, rssR int64
			for i := 0; i < *reps; i++ {
				dd = append(dd, ddWrite(d, mib))
				t1, t2, size, r1, r2 := runCkpt(*ckptBin, memfill, d, mib)
				dump, rest, img = append(dump, t1), append(rest, t2), size
				rssD, rssR = max(rssD, r1), max(rssR, r2)
				if *criu != "" {
					c1, c2 := runCRIU(*criu, memfill, d, mib)
					cd, cr = append(cd, c1), append(cr, c2)
				}
			}
			crs := []string{"-", "-"}
			if *criu != "" {
				crs = []string{secs(median(cd)), secs(median(cr))}
			}
			fmt.Printf("| %d MiB | %s | %s (%.2f GB/s) | %s (%.2f GiB/s) | %s (%.2f GiB/s) | %d MiB | %d / %d MiB | %s | %s |\n",
				mib, d, secs(median(dd)), float64(mib)/1024/median(dd).Seconds()*1.073741824,
				secs(median(dump)), float64(mib)/1024/median(dump).Seconds(),
				secs(median(rest)), float64(mib)/1024/median(rest).Seconds(),
				img>>20, rssD>>20, rssR>>20, crs[0], crs[1])
		}
	}
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

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
func startFill(memfill string, mib int) (*exec.Cmd, *bufio.Reader) {
	cmd := exec.Command(memfill, strconv.Itoa(mib))
	stdout, _ := cmd.StdoutPipe()
	check(cmd.Start())
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY") {
		fail("memfill: %q %v", line, err)
	}
	return cmd, rd
}

// timed runs a command and returns its wall time, peak RSS and stdout.
// Stdout is a file, not a pipe: a detached restore hands its stdout to the
// restored program, which would hold a pipe open.
func timed(name string, args ...string) (time.Duration, int64, string) {
	cmd := exec.Command(name, args...)
	so, err := os.CreateTemp("", "ckpt-bench-stdout-")
	check(err)
	defer os.Remove(so.Name())
	defer so.Close()
	cmd.Stdout = so
	cmd.Stderr = os.Stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		fail("%s %v: %v", name, args, err)
	}
	d := time.Since(t)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	out, _ := os.ReadFile(so.Name())
	return d, ru.Maxrss << 10, string(out)
}

func runCkpt(bin, memfill, dir string, mib int) (time.Duration, time.Duration, int64, int64, int64) {
	repo := filepath.Join(dir, "ckpt-bench-repo")
	os.RemoveAll(repo)
	defer os.RemoveAll(repo)
	cmd, rd := startFill(memfill, mib)
	td, rssD, _ := timed(bin, "--repo", repo, "dump", "--name", "bench", strconv.Itoa(cmd.Process.Pid))
	cmd.Wait()
	size := duBytes(repo)
	tr, rssR, pid := timed(bin, "--repo", repo, "restore", "--detach", "bench")
	p, _ := strconv.Atoi(strings.TrimSpace(pid))
	syscall.Kill(p, syscall.SIGUSR2)
	_ = rd
	waitGone(p)
	return td, tr, size, rssD, rssR
}

func runCRIU(criu, memfill, dir string, mib int) (time.Duration, time.Duration) {
	img := filepath.Join(dir, "criu-bench-img")
	os.RemoveAll(img)
	os.MkdirAll(img, 0o700)
	defer os.RemoveAll(img)
	cmd := exec.Command("setsid", memfill, strconv.Itoa(mib))
	logf := filepath.Join(img, "..", "criu-bench.out")
	f, _ := os.Create(logf)
	cmd.Stdout, cmd.Stdin, cmd.Stderr = f, nil, f
	check(cmd.Start())
	for {
		b, _ := os.ReadFile(logf)
		if strings.Contains(string(b), "READY") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	// setsid forks when it is a group leader; find memfill itself.
	td, _, _ := timed(criu, "dump", "-t", strconv.Itoa(pid), "-D", img, "--shell-job")
	cmd.Wait()
	tr, _, _ := timed(criu, "restore", "-D", img, "--shell-job", "-d")
	syscall.Kill(pid, syscall.SIGUSR2)
	waitGone(pid)
	return td, tr
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
