package heat

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/backend"
)

const childEnv = "CKPT_HEAT_CHILD"

var killCfg = Config{N: 96, M: 80, Steps: 4000, Every: 25}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	job, err := ckpt.Open("heat", ckpt.WithDir(os.Getenv("HEAT_REPO")), ckpt.WithLogger(slog.New(slog.DiscardHandler)))
	if err == nil {
		var res Result
		if res, err = Run(context.Background(), job, killCfg); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(res)
		}
		if cerr := job.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func TestDeterministicAndPhysical(t *testing.T) {
	cfg := Config{N: 40, M: 33, Steps: 300}
	a, err := Run(context.Background(), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(context.Background(), nil, cfg)
	if a.Hash != b.Hash || len(a.Hash) != 64 {
		t.Fatalf("two runs differ: %s %s", a.Hash, b.Hash)
	}
	cfg.Steps = 301
	if c, _ := Run(context.Background(), nil, cfg); c.Hash == a.Hash {
		t.Fatal("one more step did not change the grid")
	}
	// The parallel split (large grids) gives the serial result.
	n, m := 300, 260
	src, p, s := make([]float64, n*m), make([]float64, n*m), make([]float64, n*m)
	initial(src, n, m)
	advance(p, src, n, m)
	rows(s, src, n, m, 0, n)
	if Hash(p) != Hash(s) {
		t.Fatal("parallel step differs from the serial one")
	}
	// Heat flows: edges keep their values, the interior stays within
	// the initial range (a maximum principle holds for α <= 1/4).
	for i := 0; i < 200; i++ {
		advance(p, src, n, m)
		src, p = p, src
	}
	for j := 0; j < m; j++ {
		if src[j] != 100 || src[(n-1)*m+j] != 0 {
			t.Fatal("fixed edges changed")
		}
	}
	for _, v := range src {
		if v < 0 || v > 120 {
			t.Fatalf("temperature %v outside the initial range", v)
		}
	}
}

func TestResumeGivesTheSameResult(t *testing.T) {
	ctx := context.Background()
	ref, _ := Run(ctx, nil, Config{N: 50, M: 50, Steps: 500})
	be := backend.NewMem()
	// Stop half way (ctx cancelled from the progress callback), resume.
	cctx, cancel := context.WithCancel(ctx)
	job, _ := ckpt.Open("h", ckpt.WithBackend(be))
	_, err := Run(cctx, job, Config{N: 50, M: 50, Steps: 500, Every: 40, Progress: func(s int64) {
		if s == 230 {
			cancel()
		}
	}})
	if err != context.Canceled {
		t.Fatalf("cancelled run: %v", err)
	}
	job.Close()
	job, _ = ckpt.Open("h", ckpt.WithBackend(be))
	res, err := Run(ctx, job, Config{N: 50, M: 50, Steps: 500, Every: 40})
	if err != nil {
		t.Fatal(err)
	}
	job.Close()
	if res.ResumedFrom != 200 || res.Hash != ref.Hash || res.Steps != 500 {
		t.Fatalf("resumed from %d, hash %s, want 200 and %s", res.ResumedFrom, res.Hash, ref.Hash)
	}
	// A finished run resumes at its end; another shape is refused.
	job, _ = ckpt.Open("h", ckpt.WithBackend(be))
	defer job.Close()
	if res, err := Run(ctx, job, Config{N: 50, M: 50, Steps: 500, Every: 40}); err != nil || res.ResumedFrom != 500 || res.Hash != ref.Hash {
		t.Fatalf("rerun of a finished run: %v %+v", err, res)
	}
	job2, _ := ckpt.Open("h", ckpt.WithBackend(be))
	defer job2.Close()
	if _, err := Run(ctx, job2, Config{N: 60, M: 50, Steps: 500, Every: 40}); err == nil || !strings.Contains(err.Error(), "50x50") {
		t.Fatalf("other shape: %v", err)
	}
}

// A real process killed with SIGKILL at random moments and restarted until
// it finishes produces the uninterrupted run's bits.
func TestKillAndResumeIsBitIdentical(t *testing.T) {
	ref, err := Run(context.Background(), nil, killCfg)
	if err != nil {
		t.Fatal(err)
	}
	kills, resumed := 0, 0
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for round := range rounds {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("repo", round))
		for run := 0; ; run++ {
			if run > 500 {
				t.Fatal("the run never finished")
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=1", "HEAT_REPO="+dir)
			out, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(out)
				sc.Scan()
				line <- sc.Text()
			}()
			// The window grows with each run, so that a slow machine (or
			// -race) still lets a run get past its restore and finish.
			window := 60*time.Millisecond + time.Duration(run)*5*time.Millisecond
			timer := time.AfterFunc(time.Duration(rng.Int64N(int64(window))), func() { cmd.Process.Signal(syscall.SIGKILL) })
			l := <-line
			err := cmd.Wait()
			timer.Stop()
			if err != nil {
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
					t.Fatalf("run failed: %v\n%s", err, stderr.String())
				}
				kills++
				continue
			}
			var res Result
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatalf("child output %q: %v", l, err)
			}
			if res.Hash != ref.Hash {
				t.Fatalf("round %d: after %d kills the hash is %s, want %s (resumed from %d)", round, run, res.Hash, ref.Hash, res.ResumedFrom)
			}
			if res.ResumedFrom > 0 {
				resumed++
			}
			break
		}
	}
	if kills == 0 || resumed == 0 {
		t.Fatalf("%d kills, %d finishing runs resumed from a checkpoint: the test proved nothing", kills, resumed)
	}
	t.Logf("%d rounds, %d kills, bit-identical", rounds, kills)
}
