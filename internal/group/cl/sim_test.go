package cl

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// sim is a network of processes holding money, with FIFO channels that
// the test delivers from explicitly.
type sim struct {
	n     int
	procs []*Process
	bal   []int64
	chans map[[2]int][]Msg
	// recorded local states and completed channel states per snapshot.
	states map[uint64]map[int]int64
	locals map[uint64]map[int]Local
	total  int64
	log    strings.Builder
}

func newSim(n int, balance int64, edges [][2]int) *sim {
	s := &sim{n: n, bal: make([]int64, n), chans: map[[2]int][]Msg{},
		states: map[uint64]map[int]int64{}, locals: map[uint64]map[int]Local{}}
	if edges == nil {
		for i := range n {
			for j := range n {
				if i != j {
					edges = append(edges, [2]int{i, j})
				}
			}
		}
	}
	in := make([][]int, n)
	out := make([][]int, n)
	for _, e := range edges {
		out[e[0]] = append(out[e[0]], e[1])
		in[e[1]] = append(in[e[1]], e[0])
		s.chans[e] = nil
	}
	for i := range n {
		s.procs = append(s.procs, New(i, in[i], out[i]))
		s.bal[i] = balance
		s.total += balance
	}
	return s
}

func amount(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
func value(b []byte) int64  { return int64(binary.LittleEndian.Uint64(b)) }

// apply does what process i's Ready says, logging it.
func (s *sim) apply(i int) {
	rd := s.procs[i].Ready()
	for _, id := range rd.Record {
		if s.states[id] == nil {
			s.states[id] = map[int]int64{}
		}
		s.states[id][i] = s.bal[i]
		fmt.Fprintf(&s.log, "%d records s%d: %d\n", i, id, s.bal[i])
	}
	for _, m := range rd.Markers {
		e := [2]int{i, m.To}
		s.chans[e] = append(s.chans[e], Msg{Marker: true, Snap: m.Snap})
	}
	for _, l := range rd.Done {
		if s.locals[l.Snap] == nil {
			s.locals[l.Snap] = map[int]Local{}
		}
		s.locals[l.Snap][i] = l
		fmt.Fprintf(&s.log, "%d done s%d: %s\n", i, l.Snap, chanString(l))
	}
}

func chanString(l Local) string {
	var from []int
	for f := range l.Channels {
		from = append(from, f)
	}
	sort.Ints(from)
	var parts []string
	for _, f := range from {
		var vs []string
		for _, d := range l.Channels[f] {
			vs = append(vs, strconv.FormatInt(value(d), 10))
		}
		parts = append(parts, fmt.Sprintf("%d[%s]", f, strings.Join(vs, " ")))
	}
	return strings.Join(parts, " ")
}

func (s *sim) send(from, to int, v int64) error {
	e := [2]int{from, to}
	if _, ok := s.chans[e]; !ok {
		return fmt.Errorf("no channel %d->%d", from, to)
	}
	s.bal[from] -= v
	s.chans[e] = append(s.chans[e], Msg{Data: amount(v)})
	return nil
}

func (s *sim) deliver(from, to int) error {
	e := [2]int{from, to}
	q := s.chans[e]
	if len(q) == 0 {
		return fmt.Errorf("channel %d->%d is empty", from, to)
	}
	m := q[0]
	s.chans[e] = q[1:]
	if m.Marker {
		fmt.Fprintf(&s.log, "%d <- %d marker s%d\n", to, from, m.Snap)
	} else {
		fmt.Fprintf(&s.log, "%d <- %d %d\n", to, from, value(m.Data))
	}
	if s.procs[to].Receive(from, m) {
		s.bal[to] += value(m.Data)
	}
	s.apply(to)
	return nil
}

func (s *sim) initiate(i int, id uint64) {
	fmt.Fprintf(&s.log, "%d starts s%d\n", i, id)
	s.procs[i].Initiate(id)
	s.apply(i)
}

// complete reports whether every process finished snapshot id.
func (s *sim) complete(id uint64) bool { return len(s.locals[id]) == s.n }

// sum is the money in snapshot id: recorded states plus channel states.
func (s *sim) sum(id uint64) (total int64, inFlight int) {
	for _, v := range s.states[id] {
		total += v
	}
	for _, l := range s.locals[id] {
		for _, ms := range l.Channels {
			for _, d := range ms {
				total += value(d)
				inFlight++
			}
		}
	}
	return total, inFlight
}

// queued lists non-empty channels in a fixed order.
func (s *sim) queued() [][2]int {
	var es [][2]int
	for e, q := range s.chans {
		if len(q) > 0 {
			es = append(es, e)
		}
	}
	sort.Slice(es, func(a, b int) bool {
		if es[a][0] != es[b][0] {
			return es[a][0] < es[b][0]
		}
		return es[a][1] < es[b][1]
	})
	return es
}
