package msglog

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// app is a piecewise-deterministic application on one process: delivering
// a token of value v keeps 1 and queues v-1 for a peer chosen from v.
type app struct {
	bal  int64
	pend [][2]int64 // (to, value) waiting to be sent
}

func (a app) clone() app { a.pend = append([][2]int64(nil), a.pend...); return a }

// TestRandomFailures runs random schedules with one process at a time
// failing and restarting alone from its last checkpoint while the others
// go on. Replay must reproduce each failed process's deliveries in their
// order, no message may be delivered twice, and at the end the tokens'
// value is conserved (nothing lost). The seed is reported on failure
// (CKPT_TEST_SEED replays it; CKPT_TEST_TRACE=1 traces that one schedule).
func TestRandomFailures(t *testing.T) {
	seed, _ := strconv.ParseUint(os.Getenv("CKPT_TEST_SEED"), 10, 64)
	if seed == 0 {
		seed = rand.Uint64()
	}
	failures := 0
	for k := range 2000 {
		if os.Getenv("CKPT_TEST_TRACE") != "" && k > 0 {
			break
		}
		sd := seed + uint64(k)
		rng := rand.New(rand.NewPCG(sd, 7))
		n := 2 + rng.IntN(4)
		e := newNet(n)
		apps := make([]app, n)
		saved := make([]app, n)
		var total int64
		for i := range n {
			v := int64(5 + rng.IntN(20))
			apps[i].pend = [][2]int64{{int64((i + 1) % n), v}}
			saved[i] = apps[i].clone()
			total += v
		}
		delivered := make([]map[[2]uint64]bool, n)
		for i := range delivered {
			delivered[i] = map[[2]uint64]bool{}
		}
		prefix := make([][]string, n) // deliveries before the last failure
		fail := func(format string, a ...any) {
			t.Helper()
			t.Fatalf("seed %d (CKPT_TEST_SEED=%d): "+format, append([]any{sd, sd}, a...)...)
		}
		trace := os.Getenv("CKPT_TEST_TRACE") != ""
		tr := func(f string, a ...any) {
			if trace {
				t.Logf(f, a...)
			}
		}
		deliver := func(i int, m Msg) {
			tr("%d delivers %d#%d v=%d rsn%d", i, m.From, m.SSN, binary.LittleEndian.Uint64(m.Data), e.procs[i].st.RSN)
			key := [2]uint64{uint64(m.From), m.SSN}
			if delivered[i][key] {
				fail("%d delivered %d#%d twice", i, m.From, m.SSN)
			}
			delivered[i][key] = true
			id := strconv.Itoa(m.From) + "#" + strconv.FormatUint(m.SSN, 10)
			e.seen[i] = append(e.seen[i], id)
			if at := len(e.seen[i]); at <= len(prefix[i]) && prefix[i][at-1] != id {
				fail("%d replayed %s where it had delivered %s", i, id, prefix[i][at-1])
			}
			v := int64(binary.LittleEndian.Uint64(m.Data))
			apps[i].bal++
			if v > 1 {
				to := int(v) % n
				if to == i {
					to = (to + 1) % n
				}
				apps[i].pend = append(apps[i].pend, [2]int64{int64(to), v - 1})
			}
		}
		send := func(i int) bool {
			a := &apps[i]
			if len(a.pend) == 0 {
				return false
			}
			to, v := int(a.pend[0][0]), a.pend[0][1]
			m, err := e.procs[i].Send(to, binary.LittleEndian.AppendUint64(nil, uint64(v)))
			if err != nil {
				return false
			}
			a.pend = a.pend[1:]
			tr("%d sends %d#%d to %d v=%d", i, i, m.SSN, to, v)
			e.app[[2]int{i, to}] = append(e.app[[2]int{i, to}], m)
			return true
		}
		receive := func(from, to int) bool {
			k := [2]int{from, to}
			if len(e.app[k]) == 0 {
				return false
			}
			m := e.app[k][0]
			e.app[k] = e.app[k][1:]
			tr("%d receives %d#%d", to, m.From, m.SSN)
			e.procs[to].Receive(m)
			e.collect(to)
			return true
		}
		next := func(i int) bool {
			m, ok := e.procs[i].Next()
			if ok {
				e.collect(i)
				deliver(i, m)
			}
			return ok
		}
		control := func(from, to int) bool {
			k := [2]int{from, to}
			if len(e.ctl[k]) == 0 {
				return false
			}
			x := e.ctl[k][0]
			e.ctl[k] = e.ctl[k][1:]
			tr("%d <- %d %s", x.To, x.From, ctlString(x))
			e.procs[x.To].Handle(x)
			e.collect(x.To)
			return true
		}
		down := -1
		var preSSN map[int]uint64
		recovered := func(i int) bool {
			p := e.procs[i]
			if p.Recovering() {
				return false
			}
			for d, n := range preSSN {
				if p.st.SSN[d] < n {
					return false
				}
			}
			// Its log must know the RSN of every message delivered.
			for d, log := range p.st.Log {
				for _, x := range log {
					if x.RSN == 0 && e.procs[d].st.Delivered[i] >= x.SSN && e.procs[d].rsnOf[[2]uint64{uint64(i), x.SSN}] != 0 {
						return false
					}
				}
			}
			return true
		}
		for range 400 {
			i, j := rng.IntN(n), rng.IntN(n)
			switch r := rng.IntN(100); {
			case r < 30:
				send(i)
			case r < 55:
				receive(j, i)
			case r < 75:
				next(i)
			case r < 95:
				control(j, i)
			case r < 97:
				if e.procs[i].Recovering() {
					continue // checkpoints are taken once a recovery is over
				}
				tr("%d checkpoint", i)
				e.run(t, scriptCmd("checkpoint", i))
				saved[i] = apps[i].clone()
			default:
				if down >= 0 && down != i && !recovered(down) {
					// One failure at a time: another process may fail
					// once the last one has replayed and sent again
					// everything it had sent (its volatile log is back).
					continue
				}
				if down != i || recovered(i) {
					preSSN = e.procs[i].State().SSN
				}
				failures++
				// Replay reproduces the deliveries up to the first one
				// whose RSN was not logged yet (nothing was sent after it).
				keep := len(e.seen[i])
				for rsn := range e.procs[i].unlogged {
					keep = min(keep, int(rsn-1-e.saved[i].RSN)+len(e.savedSeen[i]))
				}
				prefix[i] = append([]string(nil), e.seen[i][:keep]...)
				tr("%d crash; restart", i)
				e.run(t, scriptCmd("crash", i))
				e.run(t, scriptCmd("restart", i))
				apps[i] = saved[i].clone()
				delivered[i] = map[[2]uint64]bool{}
				for _, s := range e.seen[i] {
					var f int
					var ssn uint64
					for x := range len(s) {
						if s[x] == '#' {
							f, _ = strconv.Atoi(s[:x])
							ssn, _ = strconv.ParseUint(s[x+1:], 10, 64)
						}
					}
					delivered[i][[2]uint64{uint64(f), ssn}] = true
				}
				down = i
			}
			e.b.Reset()
		}
		// No more failures: run until nothing moves.
		for moved := true; moved; {
			moved = false
			for i := range n {
				for send(i) {
					moved = true
				}
				for j := range n {
					for control(j, i) || receive(j, i) {
						moved = true
					}
				}
				for next(i) {
					moved = true
				}
			}
		}
		var sum int64
		for i := range n {
			if e.procs[i].Recovering() {
				fail("%d never finished recovering", i)
			}
			if len(e.procs[i].unlogged) > 0 {
				fail("%d is blocked for ever on unlogged RSNs %v", i, e.procs[i].unlogged)
			}
			sum += apps[i].bal
			for _, x := range apps[i].pend {
				sum += x[1]
			}
		}
		for i := range n {
			tr("end %d: bal %d pend %v seen %v unlogged %v", i, apps[i].bal, apps[i].pend, e.seen[i], e.procs[i].unlogged)
		}
		if sum != total {
			fail("value %d, want %d", sum, total)
		}
	}
	t.Logf("seed %d: 2000 schedules, %d failures", seed, failures)
	if failures < 1000 {
		t.Fatalf("only %d failures", failures)
	}
}
