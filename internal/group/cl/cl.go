// Package cl is the Chandy-Lamport snapshot algorithm for one process, as
// a pure state machine: no goroutines, clocks or sockets. The network loop
// hands it every message it takes off an incoming channel, in channel
// (FIFO) order, and does what Ready says before it delivers another
// message to the application or sends one:
//
//   - Record: save the local state now, for these snapshots;
//   - Markers: send a marker on each listed outgoing channel;
//   - Done: the process's part of a snapshot is complete: its local state
//     was recorded and each incoming channel's state is the list of
//     messages that arrived on it after the recording and before the
//     channel's marker.
//
// Many snapshots may run at once (each has its own ID), initiated by any
// process or by several. A snapshot never stops the application: messages
// keep flowing, and those caught in flight are recorded.
package cl

import (
	"fmt"
	"sort"
)

// Msg is a message on a channel: an application message (Data) or a
// marker of snapshot Snap.
type Msg struct {
	Marker bool
	Snap   uint64
	Data   []byte
}

// Send is a marker to send.
type Send struct {
	To   int
	Snap uint64
}

// Local is a process's completed part of a snapshot.
type Local struct {
	Snap uint64
	// Channels maps each incoming channel (by sender) to the messages
	// recorded on it, in arrival order. Every incoming channel is present.
	Channels map[int][][]byte
}

// Empty reports whether no message was recorded in flight.
func (l Local) Empty() bool {
	for _, ms := range l.Channels {
		if len(ms) > 0 {
			return false
		}
	}
	return true
}

// Ready is what the network loop must do, in this order.
type Ready struct {
	Record  []uint64
	Markers []Send
	Done    []Local
}

type snapshot struct {
	open  map[int]bool
	chans map[int][][]byte
}

// Process is one process's snapshot state.
type Process struct {
	id      int
	in, out []int
	snaps   map[uint64]*snapshot
	floor   uint64 // snapshots up to this one are finished: their markers are ignored
	rd      Ready
}

// New makes the state machine of process id with incoming channels from
// the processes in and outgoing channels to those in out.
func New(id int, in, out []int) *Process {
	return &Process{id: id, in: append([]int(nil), in...), out: append([]int(nil), out...), snaps: map[uint64]*snapshot{}}
}

// Recorded reports whether the process has recorded its state for snap.
func (p *Process) Recorded(snap uint64) bool { _, ok := p.snaps[snap]; return ok }

// Initiate starts snapshot snap here (no-op if already recorded).
func (p *Process) Initiate(snap uint64) {
	if snap > p.floor {
		p.record(snap, -1)
	}
}

func (p *Process) record(snap uint64, from int) *snapshot {
	if s, ok := p.snaps[snap]; ok {
		return s
	}
	s := &snapshot{open: map[int]bool{}, chans: map[int][][]byte{}}
	for _, c := range p.in {
		s.chans[c] = nil
		if c != from {
			s.open[c] = true
		}
	}
	p.snaps[snap] = s
	p.rd.Record = append(p.rd.Record, snap)
	for _, o := range p.out {
		p.rd.Markers = append(p.rd.Markers, Send{To: o, Snap: snap})
	}
	p.maybeDone(snap, s)
	return s
}

func (p *Process) maybeDone(snap uint64, s *snapshot) {
	if len(s.open) > 0 || s.chans == nil {
		return
	}
	p.rd.Done = append(p.rd.Done, Local{Snap: snap, Channels: s.chans})
	s.chans = nil // complete; kept so that late markers are ignored
}

// Receive takes a message that arrived from process from. It reports
// whether it is to be delivered to the application (markers are not).
func (p *Process) Receive(from int, m Msg) bool {
	if m.Marker {
		if m.Snap <= p.floor {
			return false
		}
		s, ok := p.snaps[m.Snap]
		if !ok {
			p.record(m.Snap, from)
			return false
		}
		if s.open[from] {
			delete(s.open, from)
			p.maybeDone(m.Snap, s)
		}
		return false
	}
	for _, id := range p.sortedSnaps() {
		s := p.snaps[id]
		if s.open[from] {
			s.chans[from] = append(s.chans[from], m.Data)
		}
	}
	return true
}

func (p *Process) sortedSnaps() []uint64 {
	ids := make([]uint64, 0, len(p.snaps))
	for id := range p.snaps {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	return ids
}

// Forget drops every snapshot up to snap (finished or abandoned): their
// state is freed and markers for them that arrive later are ignored.
// Snapshot IDs must therefore increase.
func (p *Process) Forget(snap uint64) {
	for id := range p.snaps {
		if id <= snap {
			delete(p.snaps, id)
		}
	}
	p.floor = max(p.floor, snap)
}

// Ready returns what to do and forgets it.
func (p *Process) Ready() Ready {
	rd := p.rd
	p.rd = Ready{}
	return rd
}

func (p *Process) String() string { return fmt.Sprintf("process %d", p.id) }
