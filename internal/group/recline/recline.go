// Package recline computes recovery lines: given the checkpoints and the
// messages of a run (a Trace), the most recent consistent global state a
// set of failed processes can restart from, and how far each process rolls
// back — the domino effect of uncoordinated checkpoints without message
// logging — compared with what sender-based message logging needs.
//
// A cut gives each process a position: the number of its events before
// the cut. It is consistent when no message is an orphan (received before
// the cut, sent after it) and none is lost (sent before the cut, received
// after it); a message not received at all by the end of the trace is in
// flight and stays so. The most recent consistent cut made of checkpoints
// (and of the current state of processes that did not fail) is found by
// rolling back: start from every failed process's last checkpoint and every
// other process's current state; while an orphan remains, move its
// receiver back to its last checkpoint before the receive; while a lost
// message remains, move its sender back to its last checkpoint before the
// send. Positions only decrease, so this ends, at worst at the initial
// states (every process has an implicit checkpoint 0 at its start).
package recline

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Kind of event.
type Kind int

// Event kinds.
const (
	Ckpt Kind = iota
	Send
	Recv
)

// Event is one event of a process.
type Event struct {
	Kind  Kind
	Msg   string // Send, Recv: message name
	Peer  int    // Send: destination
	Label string // Ckpt: checkpoint name
}

// Trace is a run: each process's events in order, and which failed.
type Trace struct {
	Names  []string
	Events [][]Event
	Failed []bool
	// send and recv locate each message: process and event index.
	send, recv map[string][2]int
}

// Parse reads a trace: one event per line, in an order that respects
// each process's own order ("#" starts a comment):
//
//	P ckpt [LABEL]     P takes a checkpoint (labels default to P1, P2, …)
//	P send MSG Q       P sends message MSG to Q
//	Q recv MSG         Q receives MSG (after it was sent)
//	P fail             P fails (its events after its last checkpoint are lost)
//
// Process names are any words; messages are named uniquely.
func Parse(r io.Reader) (*Trace, error) {
	t := &Trace{send: map[string][2]int{}, recv: map[string][2]int{}}
	idx := map[string]int{}
	proc := func(name string) int {
		if i, ok := idx[name]; ok {
			return i
		}
		idx[name] = len(t.Names)
		t.Names = append(t.Names, name)
		t.Events = append(t.Events, nil)
		t.Failed = append(t.Failed, false)
		return idx[name]
	}
	sc := bufio.NewScanner(r)
	line := 0
	pendingPeer := map[string]string{}
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		w := strings.Fields(s)
		if len(w) == 0 {
			continue
		}
		if len(w) < 2 {
			return nil, fmt.Errorf("line %d: want PROCESS EVENT", line)
		}
		p := proc(w[0])
		if t.Failed[p] {
			return nil, fmt.Errorf("line %d: %s has failed", line, w[0])
		}
		n := len(t.Events[p])
		switch w[1] {
		case "ckpt":
			label := fmt.Sprintf("%s%d", w[0], t.ckpts(p)+1)
			if len(w) > 2 {
				label = w[2]
			}
			t.Events[p] = append(t.Events[p], Event{Kind: Ckpt, Label: label})
		case "send":
			if len(w) != 4 {
				return nil, fmt.Errorf("line %d: want P send MSG Q", line)
			}
			if _, dup := t.send[w[2]]; dup {
				return nil, fmt.Errorf("line %d: message %s sent twice", line, w[2])
			}
			pendingPeer[w[2]] = w[3]
			t.send[w[2]] = [2]int{p, n}
			t.Events[p] = append(t.Events[p], Event{Kind: Send, Msg: w[2], Peer: -1})
		case "recv":
			if len(w) != 3 {
				return nil, fmt.Errorf("line %d: want Q recv MSG", line)
			}
			s, ok := t.send[w[2]]
			if !ok {
				return nil, fmt.Errorf("line %d: %s received before it was sent", line, w[2])
			}
			if _, dup := t.recv[w[2]]; dup {
				return nil, fmt.Errorf("line %d: message %s received twice", line, w[2])
			}
			if pendingPeer[w[2]] != w[0] {
				return nil, fmt.Errorf("line %d: %s was sent to %s, not %s", line, w[2], pendingPeer[w[2]], w[0])
			}
			_ = s
			t.recv[w[2]] = [2]int{p, n}
			t.Events[p] = append(t.Events[p], Event{Kind: Recv, Msg: w[2]})
		case "fail":
			t.Failed[p] = true
		default:
			return nil, fmt.Errorf("line %d: unknown event %q", line, w[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for m, s := range t.send {
		t.Events[s[0]][s[1]].Peer = proc(pendingPeer[m])
	}
	return t, nil
}

func (t *Trace) ckpts(p int) int {
	n := 0
	for _, e := range t.Events[p] {
		if e.Kind == Ckpt {
			n++
		}
	}
	return n
}

// Problems lists the orphan and lost messages of a cut (positions per
// process), in a fixed order.
func (t *Trace) Problems(pos []int) (orphans, lost []string) {
	for _, p := range t.sortedMsgs() {
		s := t.send[p]
		r, ok := t.recv[p]
		if !ok {
			continue
		}
		sent := s[1] < pos[s[0]]
		got := r[1] < pos[r[0]]
		switch {
		case got && !sent:
			orphans = append(orphans, p)
		case sent && !got:
			lost = append(lost, p)
		}
	}
	return orphans, lost
}

func (t *Trace) sortedMsgs() []string {
	// Messages in the order of their sends, process by process.
	var out []string
	for p := range t.Events {
		for _, e := range t.Events[p] {
			if e.Kind == Send {
				out = append(out, e.Msg)
			}
		}
	}
	return out
}

// lastCkptBefore is the position of p's last checkpoint at or before
// position pos (0: its start).
func (t *Trace) lastCkptBefore(p, pos int) int {
	for i := min(pos, len(t.Events[p])) - 1; i >= 0; i-- {
		if t.Events[p][i].Kind == Ckpt {
			return i + 1
		}
	}
	return 0
}

// Label names the state at position pos of p: a checkpoint's label,
// "start", or "current".
func (t *Trace) Label(p, pos int) string {
	switch {
	case pos == 0:
		return "start"
	case pos == len(t.Events[p]) && !t.Failed[p] && (pos == 0 || t.Events[p][pos-1].Kind != Ckpt):
		return "current"
	case t.Events[p][pos-1].Kind == Ckpt:
		return t.Events[p][pos-1].Label
	}
	return fmt.Sprintf("event %d", pos)
}

// Step is one rollback of the computation.
type Step struct {
	Proc     int
	From, To int    // positions
	Msg      string // the message that forced it
	Orphan   bool   // orphan (receiver rolled back) or lost (sender rolled back)
}

// Line is a recovery line.
type Line struct {
	Pos   []int  // per process
	Steps []Step // the rollbacks that led to it, in order
}

// Start is the cut before any rollback: failed processes at their last
// checkpoint, the others at their current state.
func (t *Trace) Start() []int {
	pos := make([]int, len(t.Events))
	for p := range pos {
		pos[p] = len(t.Events[p])
		if t.Failed[p] {
			pos[p] = t.lastCkptBefore(p, pos[p])
		}
	}
	return pos
}

// Recover computes the most recent consistent recovery line without
// message logging.
func (t *Trace) Recover() Line { return t.recover(false) }

// RecoverInTransit computes the most recent recovery line without orphans:
// messages in transit across it (sent before, received after) are allowed,
// as when senders log them or channel state is recorded.
func (t *Trace) RecoverInTransit() Line { return t.recover(true) }

func (t *Trace) recover(inTransitOK bool) Line {
	pos := t.Start()
	var steps []Step
	for {
		orphans, lost := t.Problems(pos)
		if inTransitOK {
			lost = nil
		}
		if len(orphans) == 0 && len(lost) == 0 {
			return Line{Pos: pos, Steps: steps}
		}
		if len(orphans) > 0 {
			m := orphans[0]
			r := t.recv[m]
			to := t.lastCkptBefore(r[0], r[1])
			steps = append(steps, Step{Proc: r[0], From: pos[r[0]], To: to, Msg: m, Orphan: true})
			pos[r[0]] = to
			continue
		}
		m := lost[0]
		s := t.send[m]
		to := t.lastCkptBefore(s[0], s[1])
		steps = append(steps, Step{Proc: s[0], From: pos[s[0]], To: to, Msg: m})
		pos[s[0]] = to
	}
}

// Replayed lists, for message logging, the messages a failed process
// received after its last checkpoint: they are replayed to it from the
// senders' logs while the other processes keep running.
func (t *Trace) Replayed(p int) []string {
	var out []string
	start := t.lastCkptBefore(p, len(t.Events[p]))
	for _, e := range t.Events[p][start:] {
		if e.Kind == Recv {
			out = append(out, e.Msg)
		}
	}
	return out
}

// Report writes the recovery line and the comparison in words.
func (t *Trace) Report(w io.Writer) { t.report(w, t.Recover()) }

// ReportInTransit is Report for RecoverInTransit.
func (t *Trace) ReportInTransit(w io.Writer) { t.report(w, t.RecoverInTransit()) }

func (t *Trace) report(w io.Writer, l Line) {
	var parts []string
	for p := range t.Events {
		parts = append(parts, t.Names[p]+"@"+t.Label(p, l.Pos[p]))
	}
	fmt.Fprintf(w, "recovery line: %s\n", strings.Join(parts, " "))
	for _, s := range l.Steps {
		why := "lost message"
		if s.Orphan {
			why = "orphan message"
		}
		fmt.Fprintf(w, "  %s %s: %s back from %s to %s\n", why, s.Msg, t.Names[s.Proc], t.Label(s.Proc, s.From), t.Label(s.Proc, s.To))
	}
	for p := range t.Events {
		end := len(t.Events[p])
		undone, past := end-l.Pos[p], 0
		for _, e := range t.Events[p][l.Pos[p]:] {
			if e.Kind == Ckpt {
				past++
			}
		}
		state := "running"
		if t.Failed[p] {
			state = "failed"
		}
		fmt.Fprintf(w, "%s (%s): rolls back %d events, past %d checkpoints\n", t.Names[p], state, undone, past)
	}
	var failed []string
	for p := range t.Events {
		if t.Failed[p] {
			r := t.Replayed(p)
			failed = append(failed, fmt.Sprintf("%s restarts from %s and replays %d logged messages [%s]",
				t.Names[p], t.Label(p, t.lastCkptBefore(p, len(t.Events[p]))), len(r), strings.Join(r, " ")))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "with message logging: %s; the others keep running\n", strings.Join(failed, "; "))
	}
}
