package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
)

// demoSteps is how many lines the sample program computes.
const demoSteps = 120

// demoProgram computes a deterministic sequence, one line per step, after
// printing a start line with its PID and a random nonce: if the restore
// re-executed it, the nonce or PID would change or "start" appear twice.
const demoPython = `import os, sys, time
nonce = os.urandom(8).hex()
out = open(sys.argv[1], "w")
out.write(f"start pid={os.getpid()} nonce={nonce}\n"); out.flush()
x = 1
for i in range(%d):
    x = (x * 6364136223846793005 + 1442695040888963407) %% (1 << 64)
    out.write(f"{i} {x} pid={os.getpid()} nonce={nonce}\n"); out.flush()
    time.sleep(0.02)
out.write("end\n"); out.close()
`

// demoExpected is what an uninterrupted run writes, given its pid and nonce.
func demoExpected(pid, nonce string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "start pid=%s nonce=%s\n", pid, nonce)
	var x uint64 = 1
	for i := 0; i < demoSteps; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		fmt.Fprintf(&b, "%d %d pid=%s nonce=%s\n", i, x, pid, nonce)
	}
	b.WriteString("end\n")
	return b.String()
}

// demoProcess starts python3, dumps it mid-way, kills it, restores it and
// checks that its output equals an uninterrupted run's.
func demoProcess(ctx context.Context, g *globalOptions, r *repo.Repository, name string) (bool, error) {
	py := "/usr/bin/python3"
	if os.Geteuid() != 0 {
		fmt.Fprintln(g.stdout, "process demo skipped: checkpointing processes needs root (ptrace, clone3 set_tid, PR_SET_MM_MAP); run the demo as root")
		return true, nil
	}
	if _, err := os.Stat(py); err != nil {
		fmt.Fprintf(g.stdout, "process demo skipped: %s is not installed\n", py)
		return true, nil
	}
	dir, err := os.MkdirTemp("", "ckpt-demo-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	script, out := filepath.Join(dir, "count.py"), filepath.Join(dir, "out.txt")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(demoPython, demoSteps)), 0o600); err != nil {
		return false, err
	}
	cmd := exec.Command(py, script, out)
	if err := cmd.Start(); err != nil {
		return false, err
	}
	pid := cmd.Process.Pid
	fmt.Fprintf(g.stdout, "process demo: started %s (PID %d), computing %d steps\n", py, pid, demoSteps)
	// Wait for a third of the work: an event in the output file.
	deadline := time.Now().Add(30 * time.Second)
	for countLines(out) < demoSteps/3 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			return false, fmt.Errorf("the sample program made no progress")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res, err := proccr.Dump(ctx, r, pid, proccr.DumpOptions{Name: name})
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return false, err
	}
	cmd.Wait()                // reap the killed process so its PID is free again
	at := countLines(out) - 2 // the start line, then one line per step
	fmt.Fprintf(g.stdout, "process demo: dumped at step %d as %s (%s), process killed\n", at, res.Manifest.ID()[:12], res.Manifest.Ref())
	rr, err := proccr.Restore(ctx, r, res.Manifest, restore.Options{}, nil)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(g.stdout, "process demo: restored PID %d from %s; it continues from step %d\n", rr.Root, res.Manifest.ID()[:12], at)
	ws, err := rr.Wait()
	if err != nil {
		return false, err
	}
	got, err := os.ReadFile(out)
	if err != nil {
		return false, err
	}
	first, _, _ := strings.Cut(string(got), "\n")
	var gpid, nonce string
	fmt.Sscanf(first, "start pid=%s nonce=%s", &gpid, &nonce)
	want := demoExpected(gpid, nonce)
	ok := ws.Exited() && ws.ExitStatus() == 0 && string(got) == want && gpid == fmt.Sprint(pid) && rr.Root == pid
	verdict := "MATCH"
	if !ok {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(g.stdout, "process demo: output of the restored run vs an uninterrupted run: %s (same PID %d, same nonce %s, started once)\n", verdict, pid, nonce)
	return ok, nil
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}
