// Command migrate benchmarks live migration against a plain dump + copy +
// restore. The program is testdata/cprog/heartbeat.c: N MiB of memory, a
// share of its pages rewritten every second, a line with a CLOCK_REALTIME
// timestamp every 10 ms. Downtime is the largest gap between two of its
// own lines; total is the wall time of the migrating command(s).
//
//   - live: `ckpt migrate PID --to 127.0.0.1:PORT` to an agent running in a
//     PID namespace of its own (unshare --pid --mount-proc), so the process
//     gets its PID there while the frozen source still holds it here;
//   - plain: `ckpt dump PID` (kills it) into a repository, `cp -a` of the
//     repository, `ckpt restore --detach` from the copy (same PID here).
//
// Both run in each repetition, interleaved, on the same machine; the
// program checks its memory at the end (PASS) or the run fails.
//
//	go build -o /tmp/ckpt ./cmd/ckpt
//	go run ./bench/migrate --ckpt /tmp/ckpt --mib 1024 --permille 10 --reps 3
package main

import (
	"encoding/json"
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

const token = "bench-migration-token-0123456789"

func main() {
	ckptBin := flag.String("ckpt", "ckpt", "ckpt binary")
	mib := flag.Int("mib", 1024, "memory of the program in MiB")
	permille := flag.Int("permille", 10, "pages rewritten per second, per mille (10 = 1 %)")
	reps := flag.Int("reps", 3, "repetitions")
	dir := flag.String("dir", "/dev/shm", "directory for the plain dump's repositories")
	settle := flag.Duration("settle", 3*time.Second, "run time before migrating")
	flag.Parse()
	check(unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	work, err := os.MkdirTemp("", "ckpt-bench-migrate-")
	check(err)
	defer os.RemoveAll(work)
	_, file, _, _ := runtime.Caller(0)
	hb := filepath.Join(work, "heartbeat")
	src := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "cprog", "heartbeat.c")
	if out, err := exec.Command("gcc", "-O2", "-o", hb, src).CombinedOutput(); err != nil {
		fail("gcc: %v: %s", err, out)
	}
	tok := filepath.Join(work, "token")
	check(os.WriteFile(tok, []byte(token), 0o600))
	port := 17000 + os.Getpid()%1000
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	agent := exec.Command("unshare", "--pid", "--kill-child", "--mount-proc", *ckptBin, "agent", "--listen", addr,
		"--data-dir", filepath.Join(work, "agent"), "--node", "dst", "--group", "mig="+tok)
	alog, err := os.Create(filepath.Join(work, "agent.log"))
	check(err)
	agent.Stdout, agent.Stderr = alog, alog
	check(agent.Start())
	defer func() { agent.Process.Kill(); agent.Wait() }()
	waitFile(filepath.Join(work, "agent.log"), "listening on", 30*time.Second)
	agentPID := childOf(agent.Process.Pid)

	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, kernel %s, load %s\n", host, runtime.NumCPU(), machine.Kernel(), machine.Load())
	fmt.Printf("program: %d MiB, %d‰ of its pages rewritten per second, a beat every 10 ms\n\n", *mib, *permille)
	var liveGap, liveTotal, liveFrozen, plainGap, plainTotal []time.Duration
	for i := 0; i < *reps; i++ {
		g, tot, fr, note := live(*ckptBin, hb, work, addr, tok, agentPID, *mib, *permille, *settle, i)
		liveGap, liveTotal, liveFrozen = append(liveGap, g), append(liveTotal, tot), append(liveFrozen, fr)
		pg, pt := plain(*ckptBin, hb, work, *dir, *mib, *permille, *settle, i)
		plainGap, plainTotal = append(plainGap, pg), append(plainTotal, pt)
		fmt.Fprintf(os.Stderr, "rep %d: live downtime %s (frozen %s) total %s [%s]; plain downtime %s total %s\n",
			i+1, ms(g), ms(fr), ms(tot), note, ms(pg), ms(pt))
	}
	load := machine.Load()
	fmt.Println("| | downtime (largest heartbeat gap) | source frozen | total |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| ckpt migrate (pre-copy) | %s | %s | %s |\n", spread(liveGap), spread(liveFrozen), spread(liveTotal))
	fmt.Printf("| dump + cp + restore | %s | — | %s |\n", spread(plainGap), spread(plainTotal))
	fmt.Printf("\nratio of downtimes (plain / live, medians): %.1f; load after: %s\n",
		stats.Median(plainGap).Seconds()/stats.Median(liveGap).Seconds(), load)
}

// live migrates one program and returns the largest gap in its beats, the
// migrate command's wall time and the source's frozen time.
func live(ckptBin, hb, work, addr, tok string, agentPID, mib, permille int, settle time.Duration, rep int) (gap, total, frozen time.Duration, note string) {
	out := filepath.Join(work, fmt.Sprintf("live%d.out", rep))
	p := startBeats(hb, out, mib, permille)
	time.Sleep(settle)
	t := time.Now()
	cmd := exec.Command(ckptBin, "migrate", strconv.Itoa(p.Process.Pid), "--to", addr, "--group", "mig", "--token-file", tok, "--json")
	b, err := cmd.Output()
	total = time.Since(t)
	if err != nil {
		fail("ckpt migrate: %v: %s", err, stderrOf(err))
	}
	var res struct {
		Rounds []struct {
			Copied uint64 `json:"copied"`
		} `json:"rounds"`
		Final     uint64  `json:"final"`
		FrozenMS  float64 `json:"frozen_ms"`
		RestoreMS float64 `json:"restore_ms"`
	}
	check(json.Unmarshal(b, &res))
	p.Wait() // killed by ckpt after the destination restored it
	var rounds []string
	for _, r := range res.Rounds {
		rounds = append(rounds, fmt.Sprintf("%d", r.Copied>>20))
	}
	note = fmt.Sprintf("rounds MiB %s, frozen pass %d KiB, restore there %.0f ms", strings.Join(rounds, "+"), res.Final>>10, res.RestoreMS)
	// Let it beat on there, then end it (SIGUSR2: check memory, PASS).
	n := beats(out)
	waitFor(func() bool { return beats(out) >= n+50 }, 30*time.Second, "beats after the migration")
	host := 0
	for h, inner := range inPIDNS(agentPID) {
		if inner == p.Process.Pid {
			host = h
		}
	}
	if host == 0 {
		fail("migrated process %d not found in the destination's PID namespace", p.Process.Pid)
	}
	check(syscall.Kill(host, syscall.SIGUSR2))
	waitFor(func() bool { return strings.Contains(read(out), "PASS") }, 60*time.Second, "PASS")
	return maxGap(out), total, time.Duration(res.FrozenMS * float64(time.Millisecond)), note
}

// plain dumps (killing), copies the repository and restores.
func plain(ckptBin, hb, work, dir string, mib, permille int, settle time.Duration, rep int) (gap, total time.Duration) {
	out := filepath.Join(work, fmt.Sprintf("plain%d.out", rep))
	r1, err := os.MkdirTemp(dir, "ckpt-bench-repo-")
	check(err)
	defer os.RemoveAll(r1)
	r2 := r1 + "-copy"
	defer os.RemoveAll(r2)
	run(ckptBin, "--repo", r1, "init")
	p := startBeats(hb, out, mib, permille)
	time.Sleep(settle)
	t := time.Now()
	run(ckptBin, "--repo", r1, "dump", "--name", "hb", strconv.Itoa(p.Process.Pid))
	run("cp", "-a", r1, r2)
	p.Wait()
	got := run(ckptBin, "--repo", r2, "restore", "--detach", "hb")
	total = time.Since(t)
	pid, err := strconv.Atoi(strings.TrimSpace(got))
	check(err)
	n := beats(out)
	waitFor(func() bool { return beats(out) >= n+50 }, 30*time.Second, "beats after the restore")
	check(syscall.Kill(pid, syscall.SIGUSR2))
	waitFor(func() bool { return strings.Contains(read(out), "PASS") }, 60*time.Second, "PASS")
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, 0, nil)
	return maxGap(out), total
}

func startBeats(hb, out string, mib, permille int) *exec.Cmd {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	check(err)
	defer f.Close()
	p := exec.Command(hb, strconv.Itoa(mib), strconv.Itoa(permille), "4242", "0")
	p.Stdout, p.Stderr = f, f
	check(p.Start())
	waitFor(func() bool { return beats(out) >= 10 }, 120*time.Second, "the program's first beats")
	return p
}

func read(p string) string { b, _ := os.ReadFile(p); return string(b) }

func beats(p string) int { return strings.Count(read(p), "\nHB ") }

// maxGap is the largest interval between consecutive beats, after the
// first (the program is filling its memory before that).
func maxGap(p string) time.Duration {
	var prev, g int64
	for _, line := range strings.Split(read(p), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == "HB" {
			ns, _ := strconv.ParseInt(f[4], 10, 64)
			if prev != 0 {
				g = max(g, ns-prev)
			}
			prev = ns
		}
		if len(f) > 0 && f[0] == "FAIL" {
			fail("%s: %s", p, line)
		}
	}
	return time.Duration(g)
}

func inPIDNS(ref int) map[int]int {
	want, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", ref))
	out := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == ref {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); l != want {
			continue
		}
		for _, line := range strings.Split(read(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "NSpid:" {
				out[pid], _ = strconv.Atoi(f[len(f)-1])
			}
		}
	}
	return out
}

func childOf(pid int) int {
	var c int
	waitFor(func() bool {
		f := strings.Fields(read(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)))
		if len(f) > 0 {
			c, _ = strconv.Atoi(f[0])
		}
		return c > 0
	}, 10*time.Second, "the agent's PID")
	return c
}

func waitFile(p, s string, d time.Duration) {
	waitFor(func() bool { return strings.Contains(read(p), s) }, d, s+" in "+p)
}

func waitFor(cond func() bool, d time.Duration, what string) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			fail("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func run(name string, args ...string) string {
	b, err := exec.Command(name, args...).Output()
	if err != nil {
		fail("%s %s: %v: %s", name, strings.Join(args, " "), err, stderrOf(err))
	}
	return string(b)
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func spread(ds []time.Duration) string {
	med, lo, hi := stats.Spread(ds)
	return fmt.Sprintf("%s (%s–%s)", ms(med), ms(lo), ms(hi))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(1)
}
