package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/proctest"
)

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestNodeCutOff: rank 3 runs in a network namespace of its own, linked
// to the others by a veth pair; the coordinator takes global checkpoints
// every 15 ms. After a few commits the link goes down: rank 3's
// connections stay open and nothing moves, as for a node behind a
// partition. The round in progress and those after it time out and abort
// (no rank's answer is taken for a commit); the group is then stopped,
// the link restored and the group restarted: it resumes from the last
// committed global checkpoint, and the final balances equal an
// uninterrupted run's and every committed snapshot conserves the money.
func TestNodeCutOff(t *testing.T) {
	proctest.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip (iproute2) is needed to cut a node off")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	tag := fmt.Sprintf("%06x", rand.IntN(1<<24))
	ns, host, peer := "ckpt-tok-"+tag, "vt"+tag, "vp"+tag
	sub := fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), rand.IntN(250))
	hostIP, nsIP := sub+".1", sub+".2"
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	ipCmd(t, "link", "set", peer, "netns", ns)
	ipCmd(t, "addr", "add", hostIP+"/24", "dev", host)
	ipCmd(t, "link", "set", host, "up")
	ipCmd(t, "-n", ns, "addr", "add", nsIP+"/24", "dev", peer)
	ipCmd(t, "-n", ns, "link", "set", peer, "up")
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")

	const size, steps, initial = 4, 3000, 1000
	dir := t.TempDir()
	log := seedLog(t, seed)
	common := fmt.Sprintf("-size %d -repo %s -steps %d -initial %d -seed %d", size, dir, steps, initial, seed)
	start := func(inc int) (*proc, []*proc, <-chan struct{}, <-chan struct{}) {
		aborts := make(chan struct{}, 1024)
		lr, lw := io.Pipe()
		go func() {
			sc := bufio.NewScanner(lr)
			for sc.Scan() {
				fmt.Fprintln(log, sc.Text())
				if strings.Contains(sc.Text(), "global checkpoint aborted") {
					aborts <- struct{}{}
				}
			}
		}()
		c, addr, commits := coordinator(t, common+" -serve "+hostIP+":0 -every 15ms -timeout 1s", lw)
		ranks := make([]*proc, size)
		for r := range size {
			args := fmt.Sprintf("%s -coordinator %s -rank %d -keep-all -pace 100us", common, addr, r)
			errw := &prefixWriter{log, fmt.Sprintf("rank %d (%d): ", r, inc)}
			if r < size-1 {
				ranks[r] = startProc(t, fmt.Sprintf("rank %d", r), args+" -listen "+hostIP+":0", nil, errw)
				continue
			}
			// The cut-off node's rank, in its namespace.
			ranks[r] = startProcVia(t, []string{"ip", "netns", "exec", ns}, "rank 3", args+" -listen "+nsIP+":0", nil, errw)
		}
		return c, ranks, commits, aborts
	}

	// First incarnation: a few commits, then the cut.
	c, ranks, commits, aborts := start(0)
	for range 2 + rand.IntN(3) {
		select {
		case <-commits:
		case <-time.After(20 * time.Second):
			t.Fatal("no commit before the cut")
		}
	}
	fmt.Fprintln(log, "--- link down")
	ipCmd(t, "link", "set", host, "down")
	select {
	case <-aborts:
	case <-time.After(20 * time.Second):
		t.Fatal("no round aborted after the cut")
	}
	// Drain the commits made before the cut became visible; none may come
	// after the abort while the link is down.
	for len(commits) > 0 {
		<-commits
	}
	select {
	case <-commits:
		t.Fatal("a global checkpoint committed while rank 3 was cut off")
	case <-aborts: // the next round aborts too
	case <-time.After(10 * time.Second):
		t.Fatal("no round after the abort")
	}
	for _, p := range append([]*proc{c}, ranks...) {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	ipCmd(t, "link", "set", host, "up")

	// The group restarts from the last committed global checkpoint.
	c, ranks, _, _ = start(1)
	var final []string
	for _, p := range ranks {
		if err := <-p.done; err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		final = append(final, strings.TrimSpace(p.out.String()))
	}
	<-c.done
	checkFinal(t, seed, final, steps, initial)
	checkSnapshots(t, dir, size, initial)
}
