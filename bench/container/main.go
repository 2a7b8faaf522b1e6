// Command container compares a whole-container checkpoint (`ckpt run
// --isolate`: cgroup freeze, namespaces, PIDs inside a PID namespace) with
// the plain process checkpoint of the same program under `ckpt run`. The
// program is testdata/cprog/heartbeat.c with N MiB of memory. Each
// repetition runs both, interleaved: start under ckpt run, wait until it
// beats, SIGTERM (checkpoint and stop; the checkpoint time is the one ckpt
// run logs), then `ckpt run --name` again (resume; the restore time is the
// job's last_restore_s) until the program checks its pages and exits.
//
//	go build -o /tmp/ckpt ./cmd/ckpt
//	go run ./bench/container --ckpt /tmp/ckpt --mib 256 --reps 5
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/bench/internal/machine"
	"github.com/ckpt/ckpt/bench/internal/stats"
)

func main() {
	ckptBin := flag.String("ckpt", "ckpt", "ckpt binary")
	mib := flag.Int("mib", 256, "memory of the program in MiB")
	reps := flag.Int("reps", 5, "repetitions")
	dir := flag.String("dir", "/dev/shm", "directory for the repositories")
	flag.Parse()
	work, err := os.MkdirTemp("", "ckpt-bench-container-")
	check(err)
	defer os.RemoveAll(work)
	_, file, _, _ := runtime.Caller(0)
	hb := filepath.Join(work, "heartbeat")
	src := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "cprog", "heartbeat.c")
	if out, err := exec.Command("gcc", "-O2", "-o", hb, src).CombinedOutput(); err != nil {
		fail("gcc: %v: %s", err, out)
	}
	fmt.Printf("%d CPUs, load %s; program: heartbeat, %d MiB\n\n", runtime.NumCPU(), machine.Load(), *mib)
	res := map[bool][2][]time.Duration{}
	for i := 0; i < *reps; i++ {
		for _, iso := range []bool{false, true} {
			repo, err := os.MkdirTemp(*dir, "ckpt-bench-container-repo-")
			check(err)
			c, r := cycle(*ckptBin, hb, repo, work, *mib, iso, i)
			os.RemoveAll(repo)
			v := res[iso]
			v[0], v[1] = append(v[0], c), append(v[1], r)
			res[iso] = v
			fmt.Printf("rep %d %-9s checkpoint %6.0f ms  restore %6.0f ms\n", i, mode(iso), ms(c), ms(r))
		}
	}
	fmt.Println()
	fmt.Println("| | checkpoint (SIGTERM: freeze, dump, commit) | restore (ckpt run --name) |")
	fmt.Println("|---|---|---|")
	for _, iso := range []bool{false, true} {
		v := res[iso]
		fmt.Printf("| %s | %s | %s |\n", mode(iso), summary(v[0]), summary(v[1]))
	}
	fmt.Printf("\nratios container/plain (medians): checkpoint %.2f, restore %.2f\n",
		ms(stats.Median(res[true][0]))/ms(stats.Median(res[false][0])), ms(stats.Median(res[true][1]))/ms(stats.Median(res[false][1])))
}

func mode(iso bool) string {
	if iso {
		return "container"
	}
	return "plain"
}

var cpLine = regexp.MustCompile(`checkpoint \S+ \(\S+\) in ([0-9.]+[a-zµ]+)`)

// cycle runs the program under ckpt run, stops it with SIGTERM and resumes
// it to the end; it returns the checkpoint and restore times.
func cycle(ckptBin, hb, repo, work string, mib int, iso bool, rep int) (time.Duration, time.Duration) {
	name := fmt.Sprintf("bench-%s-%d-%d", mode(iso), os.Getpid(), rep)
	out := filepath.Join(work, name+".out")
	args := []string{"--repo", repo, "run", "--name", name}
	if iso {
		args = append(args, "--isolate")
	}
	args = append(args, "--", hb, fmt.Sprint(mib), "0", "1", "400")
	o, err := os.Create(out)
	check(err)
	defer o.Close()
	cmd := exec.Command(ckptBin, args...)
	cmd.Stdout = o
	se, err := cmd.StderrPipe()
	check(err)
	check(cmd.Start())
	for lines(out) < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	var cp time.Duration
	sc := bufio.NewScanner(se)
	for sc.Scan() {
		if m := cpLine.FindStringSubmatch(sc.Text()); m != nil {
			cp, err = time.ParseDuration(m[1])
			check(err)
		}
	}
	cmd.Wait()
	if cp == 0 {
		fail("%s: no checkpoint logged", name)
	}
	// The restored program writes to its own stdout again: the file, reopened
	// at its offset.
	res := exec.Command(ckptBin, "--repo", repo, "run", "--name", name, "--", hb)
	if b, err := res.CombinedOutput(); err != nil {
		fail("%s: resume: %v: %s", name, err, b)
	}
	b, err := os.ReadFile(out)
	check(err)
	if !strings.Contains(string(b), "PASS") {
		fail("%s: the program did not PASS after the resume", name)
	}
	ps, err := exec.Command(ckptBin, "--repo", repo, "ps", "--json").Output()
	check(err)
	var jobs []struct {
		Name    string  `json:"name"`
		Restore float64 `json:"last_restore_s"`
	}
	check(json.Unmarshal(ps, &jobs))
	for _, j := range jobs {
		if j.Name == name {
			return cp, time.Duration(j.Restore * float64(time.Second))
		}
	}
	fail("%s: no job record", name)
	return 0, 0
}

func lines(p string) int {
	b, _ := os.ReadFile(p)
	return strings.Count(string(b), "\n")
}

func summary(d []time.Duration) string {
	med, lo, hi := stats.Spread(d)
	return fmt.Sprintf("%.0f ms (%.0f–%.0f)", ms(med), ms(lo), ms(hi))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench/container: "+format+"\n", a...)
	os.Exit(1)
}
