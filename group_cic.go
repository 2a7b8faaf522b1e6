package ckpt

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/group/cic"
)

// cicStateName is the object a CIC rank's checkpoint index is saved in,
// with the protected values.
const cicStateName = "group.cic"

// CICState is what a CIC rank saves with each checkpoint: the
// checkpoint's index and whether the protocol forced it.
type CICState struct {
	Index  uint64
	Forced bool
}

// CICEvent is one event of a CIC rank, kept when GroupConfig.Trace is set
// (a trace for the recovery-line tool, docs/GROUP.md).
type CICEvent struct {
	Kind   string // "ckpt", "send" or "recv"
	Peer   int    // send: the destination; recv: the sender
	Seq    uint64 // send, recv: the message's number on its (sender, receiver) channel, from 1
	Index  uint64 // ckpt: the checkpoint's index; send, recv: the piggybacked index
	Forced bool   // ckpt: forced by the protocol, not asked for by the program
}

// CICRank is a Job's membership in a group with communication-induced
// checkpointing, index-based (Briatico, Ciuffoletti and Simoncini): the
// rank checkpoints when its program asks (Checkpoint: a basic checkpoint,
// on its own, with no coordination), every message carries the sender's
// checkpoint index, and a message with a higher index than the receiver's
// makes the receiver take a forced checkpoint with that index before the
// message is delivered. Then, for each index i, every rank's first
// checkpoint with an index of at least i together make a consistent global
// checkpoint (no orphan message): no checkpoint is useless and there is no
// domino effect (docs/GROUP.md; CICLine).
//
// The coordinator only introduces the ranks to each other and runs the
// final barrier (a coordinator in Logged mode). A CICRank is used by one
// goroutine.
type CICRank struct {
	job *Job
	cfg GroupConfig
	ctl *group.Conn
	ln  net.Listener
	out []*peerLink
	p   cic.Process
	st  *CICState // protected as cicStateName

	inbox
	ctlCh chan group.Wire

	sent, recvd   []uint64 // messages per destination, per sender
	basic, forced int
	events        []CICEvent

	done, exiting bool
	err           error
}

// JoinCIC joins the group as a CIC rank. Protect every value before; do
// not call the Job's Checkpoint or Restore (use CICRank.Checkpoint). The
// job's checkpoints are all kept: the recovery line may need older ones.
func (j *Job) JoinCIC(ctx context.Context, cfg GroupConfig) (*CICRank, error) {
	if err := cfg.check("JoinCIC"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	j.mu.Lock()
	j.opts.keep = 0
	j.mu.Unlock()
	r := &CICRank{job: j, cfg: cfg, st: &CICState{}, inbox: inbox{notify: make(chan struct{}, 1)}, ctlCh: make(chan group.Wire, 64),
		sent: make([]uint64, cfg.Size), recvd: make([]uint64, cfg.Size)}
	if err := j.Protect(cicStateName, r.st); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()
	reg, err := register(ctx, cfg, "JoinCIC")
	if err != nil {
		return nil, err
	}
	r.ln, r.ctl = reg.ln, reg.ctl
	addrs, err := reg.peers(cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("JoinCIC: registering with the coordinator: %w", err)
	}
	reg.registered()
	if r.out, err = linkPeers(ctx, r.ln, cfg.Rank, addrs, r.push); err != nil {
		return nil, fmt.Errorf("JoinCIC: connecting to the other ranks: %w", err)
	}
	go readCtl(r.ctl, r.ctlCh)
	ok = true
	return r, nil
}

// ID is the rank's number; Size the group's.
func (r *CICRank) ID() int   { return r.cfg.Rank }
func (r *CICRank) Size() int { return r.cfg.Size }

// Index is the index of the rank's last checkpoint (0: none yet).
func (r *CICRank) Index() uint64 { return r.p.Index() }

// Checkpoints counts the rank's basic and forced checkpoints.
func (r *CICRank) Checkpoints() (basic, forced int) { return r.basic, r.forced }

// Events returns the rank's events so far (GroupConfig.Trace).
func (r *CICRank) Events() []CICEvent { return append([]CICEvent(nil), r.events...) }

// Checkpoint takes a basic checkpoint: the protected values and the new
// index, written before it returns.
func (r *CICRank) Checkpoint(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	if err := r.take(ctx, r.p.Checkpoint(), false); err != nil {
		return err
	}
	r.basic++
	return nil
}

func (r *CICRank) take(ctx context.Context, index uint64, forced bool) error {
	*r.st = CICState{Index: index, Forced: forced}
	err := r.job.Checkpoint(ctx)
	if err == nil {
		err = r.job.Wait()
	}
	if err != nil {
		// The index has moved on without a checkpoint behind it: the
		// rank cannot keep the protocol's promise any more.
		r.err = fmt.Errorf("CIC rank %d: checkpoint of index %d: %w", r.cfg.Rank, index, err)
		return r.err
	}
	if r.cfg.Trace {
		r.events = append(r.events, CICEvent{Kind: "ckpt", Index: index, Forced: forced})
	}
	return nil
}

// Send sends data to rank to with the rank's checkpoint index (FIFO per
// pair of ranks). It does not wait for the receiver.
func (r *CICRank) Send(to int, data []byte) error {
	if r.err != nil {
		return r.err
	}
	if err := r.cfg.checkSend(to, data); err != nil {
		return err
	}
	ix := r.p.Send()
	l := r.out[to]
	l.mu.Lock()
	err := group.WriteFrame(l.c, group.Frame{Kind: group.FrameData, Snap: ix, Data: data})
	l.mu.Unlock()
	if err != nil {
		r.err = fmt.Errorf("%w: sending to rank %d: %v", ErrGroupLost, to, err)
		return r.err
	}
	r.sent[to]++
	if r.cfg.Trace {
		r.events = append(r.events, CICEvent{Kind: "send", Peer: to, Seq: r.sent[to], Index: ix})
	}
	return nil
}

// Recv waits for the next message; when its index is higher than the
// rank's, the rank takes a forced checkpoint first.
func (r *CICRank) Recv(ctx context.Context) (from int, data []byte, err error) {
	from, data, ok, err := r.step(ctx, true)
	if err == nil && !ok {
		err = ctx.Err()
	}
	return from, data, err
}

// TryRecv returns the next message if one has arrived (ok false if not).
func (r *CICRank) TryRecv(ctx context.Context) (from int, data []byte, ok bool, err error) {
	return r.step(ctx, false)
}

// Done says this rank has finished and waits until every rank is done,
// then leaves the group. A message that arrives meanwhile is an error.
func (r *CICRank) Done(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	if err := r.ctl.Send(group.Wire{Type: group.MsgDone, Rank: r.cfg.Rank}); err != nil {
		return fmt.Errorf("%w: %v", ErrGroupLost, err)
	}
	r.done = true
	for !r.exiting {
		from, _, ok, err := r.step(ctx, true)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("message from rank %d after Done", from)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return r.Close()
}

// Close leaves the group at once.
func (r *CICRank) Close() error {
	closeLinks(r.ctl, r.ln, r.out)
	return nil
}

func (r *CICRank) step(ctx context.Context, wait bool) (int, []byte, bool, error) {
	for {
		if r.err != nil {
			return 0, nil, false, r.err
		}
		select {
		case w := <-r.ctlCh:
			r.handleCtl(w)
			continue
		default:
		}
		r.mu.Lock()
		var m inMsg
		have := len(r.in) > 0
		if have {
			m = r.in[0]
			r.in = r.in[1:]
		}
		r.mu.Unlock()
		if have {
			if m.err != nil {
				if !r.exiting && !r.done {
					r.err = fmt.Errorf("%w: rank %d: %v", ErrGroupLost, m.from, m.err)
				}
				continue
			}
			if m.f.Kind != group.FrameData {
				continue
			}
			if r.p.Receive(m.f.Snap) {
				// Delivering the message would make the rank's current
				// interval depend on a later one of the sender's: close
				// it with a checkpoint of the sender's index first.
				if err := r.take(ctx, r.p.Index(), true); err != nil {
					return 0, nil, false, err
				}
				r.forced++
			}
			r.recvd[m.from]++
			if r.cfg.Trace {
				r.events = append(r.events, CICEvent{Kind: "recv", Peer: m.from, Seq: r.recvd[m.from], Index: m.f.Snap})
			}
			return m.from, m.f.Data, true, nil
		}
		if !wait || r.exiting {
			return 0, nil, false, nil
		}
		select {
		case w := <-r.ctlCh:
			r.handleCtl(w)
		case <-r.notify:
		case <-ctx.Done():
			return 0, nil, false, nil
		}
	}
}

func (r *CICRank) handleCtl(w group.Wire) {
	switch w.Type {
	case "closed":
		if !r.exiting {
			r.err = fmt.Errorf("%w: coordinator: %s", ErrGroupLost, w.Error)
		}
	case group.MsgExit:
		if w.Error != "" && !r.done {
			r.err = fmt.Errorf("%w: %s", ErrGroupLost, w.Error)
			return
		}
		r.exiting = true
	}
}

// CICLine returns the consistent global checkpoint of index i given each
// rank's checkpoint indexes in order: for each rank, the position of its
// first checkpoint with an index of at least i (-1: none; its current
// state belongs to the line). The most recent line a whole group can
// restart from is i = the smallest of the ranks' last indexes.
func CICLine(indexes [][]uint64, i uint64) []int { return cic.Line(indexes, i) }

// WriteCICTrace writes the ranks' events (events[r]: rank r's, from
// CICRank.Events) as a trace for `ckpt recovery-line` and the recline
// package: processes r0, r1, …, checkpoints labelled rR.K (the K-th), the
// message from rank F to rank T numbered S named mF.T.S, in an order
// where every receive follows its send. With basicOnly the forced
// checkpoints are left out: the same run with uncoordinated checkpoints
// only, to compare. It returns each rank's checkpoint indexes as written
// (for CICLine). Add "rR fail" lines to say which ranks failed.
func WriteCICTrace(w io.Writer, events [][]CICEvent, basicOnly bool) ([][]uint64, error) {
	n := len(events)
	indexes := make([][]uint64, n)
	name := func(from, to int, seq uint64) string { return fmt.Sprintf("m%d.%d.%d", from, to, seq) }
	sent := map[string]bool{}
	pos := make([]int, n)
	for {
		progress, left := false, false
		for i := range n {
			for pos[i] < len(events[i]) {
				e := events[i][pos[i]]
				if e.Kind == "recv" && !sent[name(e.Peer, i, e.Seq)] {
					break // after its send, from another rank's events
				}
				var err error
				switch e.Kind {
				case "ckpt":
					if !basicOnly || !e.Forced {
						indexes[i] = append(indexes[i], e.Index)
						_, err = fmt.Fprintf(w, "r%d ckpt r%d.%d\n", i, i, len(indexes[i]))
					}
				case "send":
					m := name(i, e.Peer, e.Seq)
					sent[m] = true
					_, err = fmt.Fprintf(w, "r%d send %s r%d\n", i, m, e.Peer)
				case "recv":
					_, err = fmt.Fprintf(w, "r%d recv %s\n", i, name(e.Peer, i, e.Seq))
				default:
					err = fmt.Errorf("rank %d event %d: unknown kind %q", i, pos[i], e.Kind)
				}
				if err != nil {
					return nil, err
				}
				pos[i]++
				progress = true
			}
			left = left || pos[i] < len(events[i])
		}
		if !left {
			return indexes, nil
		}
		if !progress {
			for i := range n {
				if pos[i] < len(events[i]) {
					e := events[i][pos[i]]
					return nil, fmt.Errorf("rank %d receives message %d from rank %d, which rank %d never sent", i, e.Seq, e.Peer, e.Peer)
				}
			}
		}
	}
}
