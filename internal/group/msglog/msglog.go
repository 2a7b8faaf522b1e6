// Package msglog is sender-based pessimistic message logging (Johnson and
// Zwaenepoel) for one process, as a pure state machine: no goroutines,
// clocks or sockets. It lets a process that failed restart alone from its
// own last checkpoint while the others keep running.
//
//   - Every application message carries its sender's sequence number
//     (SSN) for that destination. The sender keeps the message in its log.
//   - The receiver delivers messages in some order and numbers its
//     deliveries (receive sequence number, RSN). It tells the sender the
//     RSN of each message it delivered (Ctl RSN); the sender writes it in
//     its log and confirms (Ctl Logged).
//   - Pessimistic: a process sends nothing while a delivery's RSN is not
//     yet confirmed logged (Send returns ErrBlocked), so no other process
//     ever depends on a delivery that could not be replayed.
//   - A checkpoint saves the process's counters and its own send log
//     (State, taken with the application's state); once it is durable,
//     Committed tells each sender how far it has delivered (Ctl Trim) so
//     the sender can drop those entries.
//   - A process that restarts from its checkpoint asks every peer for the
//     messages it sent after what the checkpoint delivered (Ctl Replay
//     request); it re-delivers those with known RSNs in RSN order — the
//     order of the failed run — then the rest. Messages it sends again
//     while re-executing carry the same SSNs and are dropped by their
//     receivers as duplicates (who answer with the RSN they gave them);
//     so are the logged messages it sends again at restart (Resend), which
//     may have been lost in flight with its connections.
//
// Ready lists the control messages to send; Next gives the messages to
// deliver, in order.
package msglog

import (
	"errors"
	"sort"
)

// ErrBlocked: a delivery's RSN is not yet logged at its sender; wait for
// the Logged confirmations (pessimistic logging) before sending.
var ErrBlocked = errors.New("waiting for receive sequence numbers to be logged")

// Msg is an application message.
type Msg struct {
	From, To int
	SSN      uint64
	Data     []byte
}

// CtlKind is a control message kind.
type CtlKind int

// Control messages.
const (
	CtlRSN       CtlKind = iota // receiver to sender: message SSN was delivered as RSN (RSN 0: delivered before a checkpoint, drop it)
	CtlLogged                   // sender to receiver: RSN is logged
	CtlTrim                     // receiver to sender: messages up to SSN are in a checkpoint, drop them
	CtlReplayReq                // restarted receiver to sender: resend what you sent after SSN
	CtlReplay                   // sender to receiver: the logged messages (Entries), in SSN order
)

// Entry is a logged message.
type Entry struct {
	SSN  uint64
	RSN  uint64 // 0: not known yet
	Data []byte
}

// Ctl is a control message.
type Ctl struct {
	Kind     CtlKind
	From, To int
	SSN, RSN uint64
	Entries  []Entry // CtlReplay: the messages
	Known    []Entry // CtlReplay: RSNs the replier gave the requester's messages since its checkpoint
}

// State is what a checkpoint must save with the application's state.
type State struct {
	SSN       map[int]uint64  // last SSN sent, per destination
	Log       map[int][]Entry // messages sent and not known to be checkpointed by their receiver, per destination
	RSN       uint64          // deliveries so far
	Delivered map[int]uint64  // highest SSN delivered, per sender
}

type numbered struct {
	m   Msg
	rsn uint64
}

// Process is one process's logging state.
type Process struct {
	id    int
	peers []int
	st    State
	// rsnOf: RSNs given since the last checkpoint, by (sender, SSN), to
	// answer a recovering sender's duplicates.
	rsnOf    map[[2]uint64]uint64
	unlogged map[uint64][2]uint64 // RSN -> (sender, SSN) not yet confirmed logged
	queue    []Msg                // to deliver
	queued   map[[2]uint64]bool   // (sender, SSN) in queue: a duplicate is dropped without a scan

	// Recovery.
	recovering bool
	waiting    map[int]bool // peers whose replay has not come
	replay     []numbered   // logged messages with RSNs, in RSN order once all are in
	unordered  []Msg        // logged messages without RSNs

	out    []Ctl
	resend []Msg
}

// New makes process id talking to peers, with no checkpoint.
func New(id int, peers []int) *Process {
	p := &Process{id: id, peers: append([]int(nil), peers...)}
	p.reset(State{})
	return p
}

func (p *Process) reset(st State) {
	p.st = State{SSN: map[int]uint64{}, Log: map[int][]Entry{}, RSN: st.RSN, Delivered: map[int]uint64{}}
	for k, v := range st.SSN {
		p.st.SSN[k] = v
	}
	for k, v := range st.Delivered {
		p.st.Delivered[k] = v
	}
	for k, es := range st.Log {
		p.st.Log[k] = append([]Entry(nil), es...)
	}
	p.rsnOf, p.unlogged = map[[2]uint64]uint64{}, map[uint64][2]uint64{}
	p.queue, p.queued = nil, map[[2]uint64]bool{}
}

// Send makes the message to send to to, logging it. It fails with
// ErrBlocked while a delivery's RSN is not logged.
func (p *Process) Send(to int, data []byte) (Msg, error) {
	if len(p.unlogged) > 0 {
		return Msg{}, ErrBlocked
	}
	p.st.SSN[to]++
	m := Msg{From: p.id, To: to, SSN: p.st.SSN[to], Data: data}
	p.st.Log[to] = append(p.st.Log[to], Entry{SSN: m.SSN, Data: data})
	return m, nil
}

// Receive takes an application message off the network.
func (p *Process) Receive(m Msg) {
	if m.SSN <= p.st.Delivered[m.From] {
		// A duplicate from a sender that is re-executing: tell it the RSN
		// it had, or 0 when it is already in a checkpoint.
		p.ctl(Ctl{Kind: CtlRSN, To: m.From, SSN: m.SSN, RSN: p.rsnOf[[2]uint64{uint64(m.From), m.SSN}]})
		return
	}
	k := [2]uint64{uint64(m.From), m.SSN}
	if p.queued[k] {
		return
	}
	p.queued[k] = true
	p.queue = append(p.queue, m)
}

// Next returns the next message to deliver to the application, numbering
// the delivery. During recovery it returns nothing until every peer's
// replay is in, then the replayed messages in their original order.
func (p *Process) Next() (Msg, bool) {
	if p.recovering {
		if len(p.waiting) > 0 {
			return Msg{}, false
		}
		// Replay in the failed run's order while the RSNs follow on; a
		// gap is a delivery whose RSN was never logged: the process sent
		// nothing after it (pessimistic), so what follows it may be
		// delivered in a new order.
		if len(p.replay) > 0 && p.replay[0].rsn == p.st.RSN+1 {
			m := p.replay[0].m
			p.replay = p.replay[1:]
			p.deliver(m, true)
			return m, true
		}
		p.recovering = false
		for _, r := range p.replay {
			p.unordered = append(p.unordered, r.m)
		}
		// Messages never numbered, in SSN order per sender (a sender's
		// messages are delivered in its order); then those that came
		// during the recovery, which may repeat them (dropped by SSN).
		sort.SliceStable(p.unordered, func(a, b int) bool { return p.unordered[a].SSN < p.unordered[b].SSN })
		p.queue = append(p.unordered, p.queue...)
		p.unordered, p.replay = nil, nil
	}
	for len(p.queue) > 0 {
		m := p.queue[0]
		p.queue = p.queue[1:]
		delete(p.queued, [2]uint64{uint64(m.From), m.SSN})
		if m.SSN <= p.st.Delivered[m.From] {
			continue
		}
		p.deliver(m, false)
		return m, true
	}
	return Msg{}, false
}

func (p *Process) deliver(m Msg, logged bool) {
	p.st.RSN++
	p.st.Delivered[m.From] = max(p.st.Delivered[m.From], m.SSN)
	p.rsnOf[[2]uint64{uint64(m.From), m.SSN}] = p.st.RSN
	if !logged {
		p.unlogged[p.st.RSN] = [2]uint64{uint64(m.From), m.SSN}
		p.ctl(Ctl{Kind: CtlRSN, To: m.From, SSN: m.SSN, RSN: p.st.RSN})
	}
}

func (p *Process) ctl(c Ctl) {
	c.From = p.id
	p.out = append(p.out, c)
}

// Handle takes a control message.
func (p *Process) Handle(c Ctl) {
	switch c.Kind {
	case CtlRSN:
		log := p.st.Log[c.From]
		for i := range log {
			if log[i].SSN == c.SSN {
				if c.RSN == 0 {
					p.st.Log[c.From] = append(log[:i:i], log[i+1:]...)
				} else {
					log[i].RSN = c.RSN
					p.ctl(Ctl{Kind: CtlLogged, To: c.From, RSN: c.RSN})
				}
				break
			}
		}
	case CtlLogged:
		delete(p.unlogged, c.RSN)
	case CtlTrim:
		log := p.st.Log[c.From]
		i := 0
		for i < len(log) && log[i].SSN <= c.SSN {
			i++
		}
		p.st.Log[c.From] = append([]Entry(nil), log[i:]...)
	case CtlReplayReq:
		var es []Entry
		for _, e := range p.st.Log[c.From] {
			if e.SSN > c.SSN {
				es = append(es, e)
			}
		}
		// The restarted sender lost the RSNs it logged since its
		// checkpoint: the reply gives back every one it may need (those of
		// messages sent after its checkpoint come again when it sends
		// them again, as duplicates).
		var known []Entry
		for k, rsn := range p.rsnOf {
			if k[0] == uint64(c.From) {
				known = append(known, Entry{SSN: k[1], RSN: rsn})
			}
		}
		sort.Slice(known, func(a, b int) bool { return known[a].SSN < known[b].SSN })
		p.ctl(Ctl{Kind: CtlReplay, To: c.From, Entries: es, Known: known})
	case CtlReplay:
		if !p.recovering || !p.waiting[c.From] {
			return
		}
		delete(p.waiting, c.From)
		for _, k := range c.Known {
			for i := range p.st.Log[c.From] {
				if e := &p.st.Log[c.From][i]; e.SSN == k.SSN {
					e.RSN = k.RSN
				}
			}
		}
		for _, e := range c.Entries {
			if e.SSN <= p.st.Delivered[c.From] {
				continue
			}
			m := Msg{From: c.From, To: p.id, SSN: e.SSN, Data: e.Data}
			if e.RSN != 0 {
				p.replay = append(p.replay, numbered{m, e.RSN})
			} else {
				p.unordered = append(p.unordered, m)
			}
		}
		if len(p.waiting) == 0 {
			sort.Slice(p.replay, func(a, b int) bool { return p.replay[a].rsn < p.replay[b].rsn })
		}
	}
}

// Committed tells the senders that the checkpoint whose State was st is
// durable: they drop what it delivered.
func (p *Process) Committed(st State) {
	for _, q := range p.peers {
		if st.Delivered[q] > 0 {
			p.ctl(Ctl{Kind: CtlTrim, To: q, SSN: st.Delivered[q]})
		}
	}
	p.rsnOf = map[[2]uint64]uint64{}
	// Deliveries in a durable checkpoint need no log: a failure restarts
	// after them.
	for rsn := range p.unlogged {
		if rsn <= st.RSN {
			delete(p.unlogged, rsn)
		}
	}
}

// State is a copy of the logging state.
func (p *Process) State() State {
	cp := &Process{}
	cp.reset(p.st)
	return cp.st
}

// Restart puts the process back at a checkpoint's state and asks every
// peer to replay what it sent after it.
func (p *Process) Restart(st State) {
	p.reset(st)
	p.recovering = true
	p.waiting = map[int]bool{}
	p.replay, p.unordered = nil, nil
	for _, q := range p.peers {
		p.waiting[q] = true
		p.ctl(Ctl{Kind: CtlReplayReq, To: q, SSN: p.st.Delivered[q]})
		// What it had sent before the checkpoint may have died in flight
		// with its connections: send it again (receivers drop duplicates).
		for _, e := range p.st.Log[q] {
			p.resend = append(p.resend, Msg{From: p.id, To: q, SSN: e.SSN, Data: e.Data})
		}
	}
}

// Resend returns the logged messages a restarted process must send again,
// and forgets them.
func (p *Process) Resend() []Msg {
	r := p.resend
	p.resend = nil
	return r
}

// Recovering reports whether a restart's replay is not finished.
func (p *Process) Recovering() bool { return p.recovering }

// Ready returns the control messages to send and forgets them.
func (p *Process) Ready() []Ctl {
	out := p.out
	p.out = nil
	return out
}
