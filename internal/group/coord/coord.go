// Package coord is the coordinator of a group's global checkpoints as a
// pure state machine: a two-phase commit over N ranks with no goroutines,
// clocks or sockets inside. The network loop feeds it events (a rank
// registered, voted, failed or went away; a tick of abstract time; the
// storage finished writing a global manifest) and carries out what Ready
// returns (messages to ranks, a global manifest to write).
//
// A round is:
//
//  1. prepare: the coordinator sends Prepare(r) to every rank; each rank
//     reaches a consistent point, writes its local checkpoint and votes
//     Prepared(r, checkpoint);
//  2. commit: when every rank has voted, Ready asks for the global manifest
//     of round r to be written; once the storage reports it durable
//     (Persisted) the round is committed and Commit(r) goes to every rank.
//
// The global manifest is the commit point. A rank that fails, reports an
// error, goes away or does not vote within Config.Timeout ticks aborts the
// round (Abort(r) to every rank); the previous global checkpoint remains the
// recovery line. A coordinator that crashes is rebuilt with New from what
// is durable (the newest global manifest): a round whose manifest was not
// written is aborted, one whose manifest was written is committed, whatever
// the ranks were told before the crash. Ranks learn the recovery line when
// they register (Welcome).
package coord

import (
	"errors"
	"fmt"
	"sort"
)

// Errors of Start.
var (
	ErrBusy     = errors.New("a round is in progress")
	ErrNotReady = errors.New("not every rank is registered")
)

// Type is a message type.
type Type int

// Message types, coordinator to rank.
const (
	Welcome Type = iota // registration accepted; Round and Vote: the recovery line
	Prepare             // take a local checkpoint for Round and vote
	Commit              // Round is committed: it is the recovery line
	Abort               // Round is aborted: drop its local checkpoint
)

func (t Type) String() string {
	switch t {
	case Welcome:
		return "welcome"
	case Prepare:
		return "prepare"
	case Commit:
		return "commit"
	case Abort:
		return "abort"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// Vote is what a rank reports when prepared: its local checkpoint and, for
// snapshot protocols, opaque state the global manifest carries (recorded
// channel messages).
type Vote struct {
	Checkpoint string
	Node       string
	State      []byte
}

// Msg is a message to one rank.
type Msg struct {
	To    int
	Type  Type
	Round uint64
	Vote  *Vote // Welcome: the rank's part of the recovery line (nil: none)
}

func (m Msg) String() string {
	s := fmt.Sprintf("-> %d %s r%d", m.To, m.Type, m.Round)
	if m.Vote != nil {
		s += " " + m.Vote.Checkpoint
	}
	return s
}

// Global is a global checkpoint: the round and every rank's vote, by rank.
type Global struct {
	Round uint64
	Votes []Vote
}

// Result reports how a round ended.
type Result struct {
	Round     uint64
	Committed bool
	Reason    string // why it aborted
}

// Ready is what the network loop must do.
type Ready struct {
	Msgs []Msg
	// Persist asks for the global manifest to be written; call Persisted
	// when it is durable (or failed).
	Persist *Global
	Results []Result
}

// Config configures a coordinator.
type Config struct {
	Ranks   int
	Timeout int // ticks a round may spend preparing; 0: no limit
}

type phase int

const (
	idle phase = iota
	preparing
	committing
)

// Coordinator is the state machine. It is not safe for concurrent use.
type Coordinator struct {
	cfg       Config
	committed Global
	next      uint64
	up        []bool

	phase   phase
	round   uint64
	votes   map[int]Vote
	elapsed int

	rd Ready
}

// New makes a coordinator whose recovery line is last (Round 0: none),
// read from durable storage.
func New(cfg Config, last Global) *Coordinator {
	return &Coordinator{cfg: cfg, committed: last, next: last.Round + 1, up: make([]bool, cfg.Ranks)}
}

// Committed is the recovery line: the last committed global checkpoint.
func (c *Coordinator) Committed() Global { return c.committed }

// Round is the round in progress (0 when idle).
func (c *Coordinator) Round() uint64 {
	if c.phase == idle {
		return 0
	}
	return c.round
}

func (c *Coordinator) send(to int, t Type, round uint64, v *Vote) {
	c.rd.Msgs = append(c.rd.Msgs, Msg{To: to, Type: t, Round: round, Vote: v})
}

func (c *Coordinator) broadcast(t Type, round uint64) {
	for r, up := range c.up {
		if up {
			c.send(r, t, round, nil)
		}
	}
}

func (c *Coordinator) valid(rank int) bool { return rank >= 0 && rank < len(c.up) }

// Register records that rank is up (again). A rank that registers while a
// round is preparing has lost whatever it prepared: the round aborts.
func (c *Coordinator) Register(rank int) error {
	if !c.valid(rank) {
		return fmt.Errorf("rank %d out of range [0,%d)", rank, len(c.up))
	}
	if c.phase == preparing {
		c.abort(fmt.Sprintf("rank %d registered again", rank))
	}
	c.up[rank] = true
	var v *Vote
	if c.committed.Round > 0 && rank < len(c.committed.Votes) {
		vv := c.committed.Votes[rank]
		v = &vv
	}
	c.send(rank, Welcome, c.committed.Round, v)
	return nil
}

// Down records that rank went away (its connection broke). A round
// preparing aborts; one committing goes on (the votes are in).
func (c *Coordinator) Down(rank int) {
	if !c.valid(rank) || !c.up[rank] {
		return
	}
	c.up[rank] = false
	if c.phase == preparing {
		c.abort(fmt.Sprintf("rank %d went away", rank))
	}
}

// Start begins a round and returns its number.
func (c *Coordinator) Start() (uint64, error) {
	if c.phase != idle {
		return 0, ErrBusy
	}
	for _, up := range c.up {
		if !up {
			return 0, ErrNotReady
		}
	}
	c.round, c.next = c.next, c.next+1
	c.phase, c.votes, c.elapsed = preparing, map[int]Vote{}, 0
	c.broadcast(Prepare, c.round)
	return c.round, nil
}

// Prepared records rank's vote for round. Votes for other rounds (late,
// from an aborted round) are ignored.
func (c *Coordinator) Prepared(rank int, round uint64, v Vote) {
	if c.phase != preparing || round != c.round || !c.valid(rank) {
		return
	}
	c.votes[rank] = v
	if len(c.votes) < c.cfg.Ranks {
		return
	}
	g := &Global{Round: c.round, Votes: make([]Vote, c.cfg.Ranks)}
	for r, v := range c.votes {
		g.Votes[r] = v
	}
	c.phase = committing
	c.rd.Persist = g
}

// Failed records that rank could not prepare round.
func (c *Coordinator) Failed(rank int, round uint64, reason string) {
	if c.phase != preparing || round != c.round {
		return
	}
	c.abort(fmt.Sprintf("rank %d: %s", rank, reason))
}

// Tick advances abstract time by one unit.
func (c *Coordinator) Tick() {
	if c.phase != preparing || c.cfg.Timeout == 0 {
		return
	}
	c.elapsed++
	if c.elapsed >= c.cfg.Timeout {
		var missing []int
		for r := range c.cfg.Ranks {
			if _, ok := c.votes[r]; !ok {
				missing = append(missing, r)
			}
		}
		sort.Ints(missing)
		c.abort(fmt.Sprintf("timed out waiting for ranks %v", missing))
	}
}

// Persisted reports the outcome of writing round's global manifest. With
// err == nil the manifest is durable: the round is committed.
func (c *Coordinator) Persisted(round uint64, g Global, err error) {
	if c.phase != committing || round != c.round {
		return
	}
	if err != nil {
		c.abort("writing the global manifest: " + err.Error())
		return
	}
	c.committed = g
	c.phase = idle
	c.broadcast(Commit, round)
	c.rd.Results = append(c.rd.Results, Result{Round: round, Committed: true})
}

func (c *Coordinator) abort(reason string) {
	c.broadcast(Abort, c.round)
	c.rd.Results = append(c.rd.Results, Result{Round: c.round, Reason: reason})
	c.phase, c.votes = idle, nil
}

// Ready returns what to do and forgets it.
func (c *Coordinator) Ready() Ready {
	rd := c.rd
	c.rd = Ready{}
	return rd
}
