package cl

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/group/script"
)

func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var s *sim
			script.Run(t, f, func(t *testing.T, c script.Cmd) string {
				num := func(i int) int {
					n, err := strconv.Atoi(c.Args[i])
					if err != nil {
						t.Fatalf("%s: %v", c.Line, err)
					}
					return n
				}
				switch c.Name {
				case "net":
					n, _ := c.Arg("nodes")
					b, _ := c.Arg("balance")
					nn, _ := strconv.Atoi(n)
					bb, _ := strconv.Atoi(b)
					var edges [][2]int
					if ch, ok := c.Arg("channels"); ok {
						for _, e := range strings.Split(ch, ",") {
							a, z, _ := strings.Cut(e, "-")
							x, _ := strconv.Atoi(a)
							y, _ := strconv.Atoi(z)
							edges = append(edges, [2]int{x, y})
						}
					}
					s = newSim(nn, int64(bb), edges)
					return ""
				case "send":
					if err := s.send(num(0), num(1), int64(num(2))); err != nil {
						return err.Error()
					}
					return ""
				case "deliver":
					if err := s.deliver(num(0), num(1)); err != nil {
						return err.Error()
					}
				case "snapshot":
					s.initiate(num(0), uint64(num(1)))
				case "result":
					id := uint64(num(0))
					if !s.complete(id) {
						return fmt.Sprintf("s%d incomplete", id)
					}
					var st []string
					for i := range s.n {
						st = append(st, fmt.Sprintf("%d:%d", i, s.states[id][i]))
					}
					total, _ := s.sum(id)
					return fmt.Sprintf("s%d states %s total %d", id, strings.Join(st, " "), total)
				default:
					t.Fatalf("unknown command %q", c.Name)
				}
				out := s.log.String()
				s.log.Reset()
				return out
			})
		})
	}
}

// TestConservation runs thousands of random schedules: processes send
// money at random, channels deliver in random interleavings, snapshots
// start at random processes, several at once. Every completed snapshot's
// recorded states plus its channel states must hold exactly the total.
func TestConservation(t *testing.T) {
	seed := uint64(rand.Int64())
	if s := testingSeed(); s != 0 {
		seed = s
	}
	const schedules = 3000
	var snaps, nonEmpty int
	for k := range schedules {
		sd := seed + uint64(k)
		rng := rand.New(rand.NewPCG(sd, 0xC0FFEE))
		n := 2 + rng.IntN(5)
		s := newSim(n, 1000, nil)
		var next uint64 = 1
		for range 200 + rng.IntN(300) {
			switch r := rng.IntN(100); {
			case r < 40:
				from, to := rng.IntN(n), rng.IntN(n)
				if from != to && s.bal[from] > 0 {
					s.send(from, to, 1+rng.Int64N(s.bal[from]))
				}
			case r < 97:
				if q := s.queued(); len(q) > 0 {
					e := q[rng.IntN(len(q))]
					s.deliver(e[0], e[1])
				}
			default:
				s.initiate(rng.IntN(n), next)
				next++
			}
			s.log.Reset()
		}
		for q := s.queued(); len(q) > 0; q = s.queued() { // drain
			e := q[rng.IntN(len(q))]
			s.deliver(e[0], e[1])
		}
		s.log.Reset()
		for id := uint64(1); id < next; id++ {
			if !s.complete(id) {
				t.Fatalf("seed %d: snapshot %d never completed", sd, id)
			}
			total, inFlight := s.sum(id)
			if total != s.total {
				t.Fatalf("seed %d (CKPT_TEST_SEED=%d): snapshot %d holds %d, want %d", sd, sd, id, total, s.total)
			}
			snaps++
			if inFlight > 0 {
				nonEmpty++
			}
		}
	}
	t.Logf("seed %d: %d schedules, %d snapshots, %d with messages in flight", seed, schedules, snaps, nonEmpty)
	if snaps < schedules || nonEmpty*3 < snaps {
		t.Fatalf("seed %d: only %d of %d snapshots recorded channel state", seed, nonEmpty, snaps)
	}
}
