// Command native shows that a program under `ckpt run` runs at native speed
// between checkpoints: no tracer stays attached and no call is wrapped. It
// times a compute loop, 2M write(2) calls and 300k open+close pairs, bare
// and under `ckpt run` (with no checkpoint falling inside the run), and
// prints the ratios as a Markdown table.
//
//	go build -o /tmp/ckpt ./cmd/ckpt && go run ./bench/native --ckpt /tmp/ckpt
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

func main() {
	ckptBin := flag.String("ckpt", "ckpt", "ckpt binary")
	reps := flag.Int("reps", 3, "repetitions, alternating bare and under ckpt (best kept)")
	flag.Parse()
	work, err := os.MkdirTemp("", "ckpt-native-")
	check(err)
	defer os.RemoveAll(work)
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(work, "work")
	if out, err := exec.Command("gcc", "-O2", "-o", bin, filepath.Join(filepath.Dir(file), "testdata", "work.c")).CombinedOutput(); err != nil {
		fail("gcc: %v: %s", err, out)
	}
	repo := filepath.Join(work, "repo")
	fmt.Println("| workload | bare | under ckpt run | ratio |")
	fmt.Println("|---|---|---|---|")
	for _, w := range []string{"compute", "syscalls", "opens"} {
		var bare, under time.Duration
		for i := 0; i < *reps; i++ {
			b := timeIt(bin, w)
			u := timeIt(*ckptBin, "--repo", repo, "run", "--every", "1h", "--", bin, w)
			if i == 0 || b < bare {
				bare = b
			}
			if i == 0 || u < under {
				under = u
			}
		}
		fmt.Printf("| %s | %.3f s | %.3f s | %.2f |\n", w, bare.Seconds(), under.Seconds(), under.Seconds()/bare.Seconds())
	}
}

func timeIt(name string, args ...string) time.Duration {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	t := time.Now()
	if err := cmd.Run(); err != nil {
		fail("%s: %v", name, err)
	}
	return time.Since(t)
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
