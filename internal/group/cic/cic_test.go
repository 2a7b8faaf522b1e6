package cic

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/group/recline"
	"github.com/ckpt/ckpt/internal/group/script"
)

func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			procs := map[string]*Process{}
			inflight := map[string]uint64{}
			get := func(n string) *Process {
				if procs[n] == nil {
					procs[n] = &Process{}
				}
				return procs[n]
			}
			script.Run(t, f, func(t *testing.T, c script.Cmd) string {
				p := get(c.Name)
				switch c.Args[0] {
				case "ckpt":
					return fmt.Sprintf("%s basic checkpoint index %d", c.Name, p.Checkpoint())
				case "send":
					inflight[c.Args[1]] = p.Send()
					return ""
				case "recv":
					if p.Receive(inflight[c.Args[1]]) {
						return fmt.Sprintf("%s forced checkpoint index %d before %s", c.Name, p.Index(), c.Args[1])
					}
					return ""
				}
				t.Fatalf("bad line %q", c.Line)
				return ""
			})
		})
	}
}

// TestNoUselessCheckpoints runs random computations with basic
// checkpoints at random, then every process fails at the end. With BCS
// forced checkpoints every index line is consistent (checked by recline,
// which knows nothing of indexes); without them (the same basic
// checkpoints) the rollback search goes further back: the domino effect.
func TestNoUselessCheckpoints(t *testing.T) {
	seed := rand.Uint64()
	var withLoss, withoutLoss int
	for k := range 500 {
		sd := seed + uint64(k)
		rng := rand.New(rand.NewPCG(sd, 3))
		n := 2 + rng.IntN(4)
		var bcs, plain strings.Builder
		ps := make([]Process, n)
		idx := make([][]uint64, n)
		type msg struct {
			name string
			sn   uint64
		}
		inflight := make([][]msg, n) // to each process
		mid := 0
		for range 300 {
			i := rng.IntN(n)
			switch r := rng.IntN(10); {
			case r < 1:
				x := ps[i].Checkpoint()
				idx[i] = append(idx[i], x)
				fmt.Fprintf(&bcs, "p%d ckpt p%d.%d\n", i, i, len(idx[i]))
				fmt.Fprintf(&plain, "p%d ckpt\n", i)
			case r < 5:
				j := rng.IntN(n)
				if j == i {
					continue
				}
				mid++
				m := msg{"m" + strconv.Itoa(mid), ps[i].Send()}
				inflight[j] = append(inflight[j], m)
				fmt.Fprintf(&bcs, "p%d send %s p%d\n", i, m.name, j)
				fmt.Fprintf(&plain, "p%d send %s p%d\n", i, m.name, j)
			default:
				if len(inflight[i]) == 0 {
					continue
				}
				q := rng.IntN(len(inflight[i])) // any order: not FIFO
				m := inflight[i][q]
				inflight[i] = append(inflight[i][:q], inflight[i][q+1:]...)
				if ps[i].Receive(m.sn) {
					idx[i] = append(idx[i], ps[i].Index())
					fmt.Fprintf(&bcs, "p%d ckpt p%d.%d\n", i, i, len(idx[i]))
				}
				fmt.Fprintf(&bcs, "p%d recv %s\n", i, m.name)
				fmt.Fprintf(&plain, "p%d recv %s\n", i, m.name)
			}
		}
		for i := range n {
			fmt.Fprintf(&bcs, "p%d fail\n", i)
			fmt.Fprintf(&plain, "p%d fail\n", i)
		}
		tr, err := recline.Parse(strings.NewReader(bcs.String()))
		if err != nil {
			t.Fatal(err)
		}
		// Positions of each process's checkpoints in the trace, whose
		// processes are numbered by first appearance.
		ti := make([]int, n)
		for k, name := range tr.Names {
			x, _ := strconv.Atoi(name[1:])
			ti[x] = k
		}
		for p := range n {
			if tr.Names[ti[p]] != "p"+strconv.Itoa(p) {
				ti[p] = -1
			}
		}
		ckptPos := make([][]int, n)
		for p := range n {
			if ti[p] < 0 {
				continue
			}
			for e, ev := range tr.Events[ti[p]] {
				if ev.Kind == recline.Ckpt {
					ckptPos[p] = append(ckptPos[p], e+1)
				}
			}
		}
		top := uint64(1 << 62)
		for p := range n {
			last := uint64(0)
			if len(idx[p]) > 0 {
				last = idx[p][len(idx[p])-1]
			}
			top = min(top, last)
		}
		for i := uint64(1); i <= top; i++ {
			line := Line(idx, i)
			pos := make([]int, len(tr.Names))
			for p, c := range line {
				pos[ti[p]] = ckptPos[p][c]
			}
			// Messages in transit across the line are allowed (the
			// senders log them); orphans are not.
			if o, _ := tr.Problems(pos); len(o) > 0 {
				t.Fatalf("seed %d: index line %d %v has orphans %v", sd, i, line, o)
			}
		}
		// The rollback search on the BCS trace never goes below the
		// line of the smallest last index.
		rec := tr.RecoverInTransit()
		if top > 0 {
			line := Line(idx, top)
			for p, c := range line {
				if rec.Pos[ti[p]] < ckptPos[p][c] {
					t.Fatalf("seed %d: recovery line below index line %d", sd, top)
				}
			}
		}
		withLoss += lost(tr, rec.Pos)
		pt, err := recline.Parse(strings.NewReader(plain.String()))
		if err != nil {
			t.Fatal(err)
		}
		withoutLoss += lost(pt, pt.RecoverInTransit().Pos)
	}
	t.Logf("events lost to rollback over 500 runs: %d with BCS forced checkpoints, %d without", withLoss, withoutLoss)
	if withLoss >= withoutLoss {
		t.Fatalf("seed %d: forced checkpoints did not reduce rollback (%d >= %d)", seed, withLoss, withoutLoss)
	}
}

func lost(t *recline.Trace, pos []int) int {
	n := 0
	for p := range t.Events {
		n += len(t.Events[p]) - pos[p]
	}
	return n
}
