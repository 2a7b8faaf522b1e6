package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/repo"
)

// The test binary runs the program itself when asked (re-exec), so ranks
// and the coordinator are real processes that SIGKILL really kills.
const childEnv = "CKPT_TOKENS_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		os.Args = append([]string{"tokens"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type proc struct {
	name string
	cmd  *exec.Cmd
	out  strings.Builder
	done chan error
}

func startProc(t *testing.T, name, args string, stdout, stderr io.Writer) *proc {
	t.Helper()
	return startProcVia(t, nil, name, args, stdout, stderr)
}

// startProcVia is startProc with the test binary run by the command via
// (e.g. ip netns exec NS), when via is not empty.
func startProcVia(t *testing.T, via []string, name, args string, stdout, stderr io.Writer) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan error, 1)}
	argv := append(append([]string(nil), via...), os.Args[0])
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), childEnv+"="+args)
	p.cmd.Stdout = stdout
	if stdout == nil {
		p.cmd.Stdout = &p.out
	}
	p.cmd.Stderr = stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p
}

// coordinator starts the coordinator and returns its address and a channel
// that gets a value for every committed round.
func coordinator(t *testing.T, args string, log io.Writer) (*proc, string, <-chan struct{}) {
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	p := startProc(t, "coordinator", args, outW, errW)
	go func() {
		<-p.done
		outW.Close()
		errW.Close()
		p.done <- nil
	}()
	commits := make(chan struct{}, 1024)
	go func() {
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			fmt.Fprintln(log, "coordinator:", sc.Text())
			if strings.Contains(sc.Text(), "global checkpoint committed") {
				commits <- struct{}{}
			}
		}
	}()
	sc := bufio.NewScanner(outR)
	if !sc.Scan() {
		t.Fatal("coordinator printed no address")
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening ")
	if !ok {
		t.Fatalf("coordinator said %q", sc.Text())
	}
	go io.Copy(io.Discard, outR)
	return p, addr, commits
}

// TestKillAndRestart runs four ranks passing money while the coordinator
// takes global checkpoints every 15 ms, and SIGKILLs a random rank or the
// coordinator at random points (mid-round included) several times. After
// each kill the whole group is started again and resumes from the last
// committed global checkpoint. The final balances must equal those of an
// uninterrupted run (nothing lost or duplicated), and every committed
// global checkpoint must hold exactly the money and messages of the run:
// recorded balances plus the recorded channel messages equal the total,
// and messages sent equal messages received plus those recorded in flight.
func TestKillAndRestart(t *testing.T) {
	seed := rand.Uint64()
	if s, err := strconv.ParseUint(os.Getenv("CKPT_TEST_SEED"), 10, 64); err == nil {
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	t.Logf("seed %d (CKPT_TEST_SEED replays the schedule of kills)", seed)
	const size, steps, initial = 4, 3000, 1000
	dir := t.TempDir()
	log := seedLog(t, seed)
	common := fmt.Sprintf("-size %d -repo %s -steps %d -initial %d -seed %d", size, dir, steps, initial, seed)
	kills := 3 + rng.IntN(3)
	deadline := time.Now().Add(40 * time.Second)
	var final []string
	for inc := 0; ; inc++ {
		if time.Now().After(deadline) {
			t.Fatalf("seed %d: not finished after %d incarnations", seed, inc)
		}
		c, addr, commits := coordinator(t, common+" -serve 127.0.0.1:0 -every 15ms -timeout 5s", log)
		ranks := make([]*proc, size)
		for r := range size {
			ranks[r] = startProc(t, fmt.Sprintf("rank %d", r), fmt.Sprintf("%s -coordinator %s -rank %d -keep-all -pace 100us", common, addr, r), nil, &prefixWriter{log, fmt.Sprintf("rank %d: ", r)})
		}
		all := append([]*proc{c}, ranks...)
		if inc < kills {
			// After 1-3 commits of this incarnation and a random few
			// milliseconds (a point of the run, not a synchronisation).
			n := 1 + rng.IntN(3)
			timeout := time.After(20 * time.Second)
			for range n {
				select {
				case <-commits:
				case <-timeout:
					t.Fatalf("seed %d: no commit", seed)
				}
			}
			time.Sleep(time.Duration(rng.IntN(15000)) * time.Microsecond)
			victim := all[rng.IntN(len(all))]
			fmt.Fprintf(log, "--- SIGKILL %s (incarnation %d)\n", victim.name, inc)
			victim.cmd.Process.Signal(syscall.SIGKILL)
			<-victim.done
			for _, p := range all {
				if p != victim {
					p.cmd.Process.Signal(syscall.SIGKILL)
					<-p.done
				}
			}
			continue
		}
		ok := true
		for _, p := range ranks {
			if err := <-p.done; err != nil {
				t.Errorf("%s: %v", p.name, err)
				ok = false
			}
			final = append(final, strings.TrimSpace(p.out.String()))
		}
		<-c.done
		if !ok {
			t.FailNow()
		}
		break
	}
	checkFinal(t, seed, final, steps, initial)
	checkSnapshots(t, dir, size, initial)
}

// checkFinal checks the ranks' last lines: every balance equals an
// uninterrupted run's, and every rank restored a global checkpoint.
func checkFinal(t *testing.T, seed uint64, final []string, steps, initial int64) {
	t.Helper()
	want := Expected(seed, len(final), steps, initial)
	for r, line := range final {
		var rk int
		var bal, sent, recv, restored int64
		if _, err := fmt.Sscanf(line, "rank %d balance %d sent %d received %d restored %d", &rk, &bal, &sent, &recv, &restored); err != nil {
			t.Fatalf("rank %d printed %q", r, line)
		}
		if bal != want[r] {
			t.Errorf("seed %d: rank %d ends with %d, an uninterrupted run with %d", seed, r, bal, want[r])
		}
		if restored == 0 {
			t.Errorf("rank %d's last incarnation did not restore a global checkpoint", r)
		}
	}
}

// checkSnapshots checks every committed global checkpoint in the
// repository.
func checkSnapshots(t *testing.T, dir string, size int, initial int64) {
	ctx := context.Background()
	rp, err := repo.OpenDir(ctx, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	ms, _, err := rp.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readInt := func(m *repo.Manifest, name string) int64 {
		or, err := rp.OpenObject(m, name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := or.ReadAll(ctx)
		if err != nil || len(b) != 8 {
			t.Fatalf("%s %s: %v", m.Ref(), name, err)
		}
		return int64(binary.LittleEndian.Uint64(b))
	}
	snaps, nonEmpty := 0, 0
	for _, g := range ms {
		if g.Kind != repo.KindGroup {
			continue
		}
		snaps++
		if len(g.Members) != size {
			t.Fatalf("%s has %d members", g.Ref(), len(g.Members))
		}
		var money, sent, received, inFlight int64
		for _, mb := range g.Members {
			m, err := rp.Load(ctx, mb.Checkpoint)
			if err != nil {
				t.Fatalf("%s rank %d: %v", g.Ref(), mb.Rank, err)
			}
			money += readInt(m, "balance")
			sent += readInt(m, "sent")
			received += readInt(m, "received")
		}
		for _, o := range g.Objects {
			b, err := rp.ReadGroupObject(ctx, g, o.Name)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := group.DecodeMessages(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range msgs {
				money += int64(binary.LittleEndian.Uint64(x))
				inFlight++
			}
		}
		if inFlight > 0 {
			nonEmpty++
		}
		if money != int64(size)*initial {
			t.Errorf("%s (round %s) holds %d, want %d", g.Ref(), g.Meta["round"], money, int64(size)*initial)
		}
		if sent != received+inFlight {
			t.Errorf("%s: %d sent, %d received + %d in flight", g.Ref(), sent, received, inFlight)
		}
	}
	t.Logf("%d global checkpoints, %d with messages recorded in flight", snaps, nonEmpty)
	if snaps < 5 || nonEmpty*4 < snaps {
		t.Errorf("too few global checkpoints (%d) or too few with channel state (%d)", snaps, nonEmpty)
	}
}

// seedLog returns the log the test's processes write to; it is shown with
// the seed when the test fails.
func seedLog(t *testing.T, seed uint64) *syncWriter {
	log := &syncWriter{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d; logs:\n%s", seed, log.String())
		}
	})
	return log
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			io.WriteString(p.w, p.prefix+l)
		}
	}
	return len(b), nil
}
