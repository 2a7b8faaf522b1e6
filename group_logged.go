package ckpt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/group/msglog"
)

// loggedStateName is the object a logged rank's own message-logging state
// is saved in, with the protected values.
const loggedStateName = "group.msglog"

// LoggedRank is a Job's membership in a group whose ranks checkpoint on
// their own, with sender-based pessimistic message logging: a rank that
// fails restarts alone from its own last checkpoint, the messages it had
// received since are replayed to it in their original order from the
// senders' logs, and the other ranks keep running. The coordinator only
// introduces the ranks to each other and runs the final barrier.
//
// The program must be piecewise deterministic: what it sends depends only
// on its state and the messages it was given, in order (not on time or
// on whether a message had arrived yet). One failure at a time is
// tolerated: a second rank must not fail before a restarted one has sent
// again what it had sent before it failed.
type LoggedRank struct {
	job *Job
	cfg GroupConfig
	ctl *group.Conn
	ln  net.Listener
	adv string
	lp  *msglog.Process
	st  *msglog.State // protected as loggedStateName

	links []*loggedLink

	inbox
	ctlCh chan group.Wire

	restarted bool
	done      bool
	exiting   bool
	err       error
}

type loggedLink struct {
	mu    sync.Mutex
	addr  string
	c     net.Conn
	queue []group.Frame
	gen   int
}

// JoinLogged joins the group as a logged rank. When the job has a
// checkpoint (this rank failed and was started again) it is restored and
// the rank asks every peer to replay what it sent after it; the other
// ranks are not restarted. Protect every value before; do not call the
// Job's Checkpoint or Restore (use LoggedRank.Checkpoint).
func (j *Job) JoinLogged(ctx context.Context, cfg GroupConfig) (*LoggedRank, error) {
	if err := cfg.check("JoinLogged"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var peers []int
	for p := range cfg.Size {
		if p != cfg.Rank {
			peers = append(peers, p)
		}
	}
	r := &LoggedRank{job: j, cfg: cfg, lp: msglog.New(cfg.Rank, peers), st: &msglog.State{},
		inbox: inbox{notify: make(chan struct{}, 1)}, ctlCh: make(chan group.Wire, 64), links: make([]*loggedLink, cfg.Size)}
	for p := range r.links {
		r.links[p] = &loggedLink{}
	}
	if err := j.Protect(loggedStateName, r.st); err != nil {
		return nil, err
	}
	info, err := j.Restore(ctx)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
		// A first start, or a rank that failed before its first
		// checkpoint: either way the peers replay whatever they sent it.
		r.lp.Restart(msglog.State{})
	case err != nil:
		return nil, fmt.Errorf("JoinLogged: %w", err)
	default:
		r.restarted = true
		r.lp.Restart(*r.st)
		j.log.Info("logged rank restarts alone from its checkpoint", "rank", cfg.Rank, "seq", info.Seq, "delivered", r.st.RSN)
	}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()
	reg, err := register(ctx, cfg, "JoinLogged")
	if err != nil {
		return nil, err
	}
	r.ln, r.ctl, r.adv = reg.ln, reg.ctl, reg.adv
	addrs, err := reg.peers(cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("JoinLogged: registering: %w", err)
	}
	reg.registered()
	go r.accept()
	for _, p := range peers {
		r.redial(p, addrs[p])
	}
	go readCtl(r.ctl, r.ctlCh)
	r.flush() // the replay requests and messages to send again
	ok = true
	return r, nil
}

func (r *LoggedRank) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			f, err := group.ReadFrame(c)
			from, addr, herr := group.ParseHello(f)
			if err != nil || herr != nil || from < 0 || from >= r.cfg.Size || from == r.cfg.Rank {
				c.Close()
				return
			}
			// A peer that (re)connects may have restarted elsewhere: our
			// link to it must lead to where it listens now.
			r.redial(from, addr)
			for {
				f, err := group.ReadFrame(c)
				if err != nil {
					c.Close()
					return // the peer failed or finished: it comes back on its own
				}
				r.push(inMsg{from: from, f: f})
			}
		}()
	}
}

// redial (re)connects the link to peer p at addr unless it is connected
// there already; frames wait in the link's queue meanwhile.
func (r *LoggedRank) redial(p int, addr string) {
	l := r.links[p]
	l.mu.Lock()
	if l.addr == addr && l.c != nil {
		l.mu.Unlock()
		return
	}
	if l.c != nil {
		l.c.Close()
		l.c = nil
	}
	l.addr = addr
	l.gen++
	gen := l.gen
	l.mu.Unlock()
	go func() {
		for attempt := 0; ; attempt++ {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err == nil {
				err = group.WriteFrame(c, group.Hello(r.cfg.Rank, r.adv))
			}
			l.mu.Lock()
			if l.gen != gen {
				l.mu.Unlock()
				if c != nil {
					c.Close()
				}
				return
			}
			if err == nil {
				for len(l.queue) > 0 && err == nil {
					err = group.WriteFrame(c, l.queue[0])
					if err == nil {
						l.queue = l.queue[1:]
					}
				}
				if err == nil {
					l.c = c
					l.mu.Unlock()
					return
				}
			}
			l.mu.Unlock()
			if c != nil {
				c.Close()
			}
			if attempt > 50 {
				return // the peer is gone; it will connect to us when it comes back
			}
			time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond) // backoff between dial attempts
		}
	}()
}

// write sends a frame on p's link, or queues it while the link is down
// (the peer dedups what it gets twice).
func (r *LoggedRank) write(p int, f group.Frame) {
	l := r.links[p]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		if err := group.WriteFrame(l.c, f); err == nil {
			return
		}
		l.c.Close()
		l.c = nil
	}
	l.queue = append(l.queue, f)
}

// flush sends the state machine's control messages and resends.
func (r *LoggedRank) flush() {
	for _, m := range r.lp.Resend() {
		r.write(m.To, group.Frame{Kind: group.FrameData, Snap: m.SSN, Data: m.Data})
	}
	for _, c := range r.lp.Ready() {
		b, _ := json.Marshal(c)
		r.write(c.To, group.Frame{Kind: group.FrameCtl, Data: b})
	}
}

// Recovering reports whether a restart's replay is still going on.
func (r *LoggedRank) Recovering() bool { return r.lp.Recovering() }

// Restarted reports whether the rank restarted from its own checkpoint.
func (r *LoggedRank) Restarted() bool { return r.restarted }

// Send sends data to rank to. It logs the message first and waits while
// a message this rank received is not yet logged at its sender
// (pessimistic logging).
func (r *LoggedRank) Send(ctx context.Context, to int, data []byte) error {
	if err := r.cfg.checkSend(to, data); err != nil {
		return err
	}
	for {
		if r.err != nil {
			return r.err
		}
		m, err := r.lp.Send(to, data)
		if err == nil {
			r.write(to, group.Frame{Kind: group.FrameData, Snap: m.SSN, Data: data})
			return nil
		}
		if !errors.Is(err, msglog.ErrBlocked) {
			return err
		}
		if _, _, ok, err := r.step(ctx, true, false); err != nil {
			return err
		} else if !ok && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Recv waits for the next message.
func (r *LoggedRank) Recv(ctx context.Context) (from int, data []byte, err error) {
	for {
		from, data, ok, err := r.step(ctx, true, true)
		if err != nil || ok {
			return from, data, err
		}
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
	}
}

// TryRecv returns the next message if one can be delivered now.
func (r *LoggedRank) TryRecv() (from int, data []byte, ok bool, err error) {
	return r.step(context.Background(), false, true)
}

// Checkpoint checkpoints the job with the rank's logging state and, once
// it is durable, lets the senders drop what it covers.
func (r *LoggedRank) Checkpoint(ctx context.Context) error {
	for r.lp.Recovering() {
		if _, _, _, err := r.step(ctx, true, false); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	*r.st = r.lp.State()
	if err := r.job.Checkpoint(ctx); err != nil {
		return err
	}
	if err := r.job.Wait(); err != nil {
		return err
	}
	r.lp.Committed(*r.st)
	r.flush()
	return nil
}

// Done says the rank has finished and serves its peers (replays to a
// restarted one) until every rank is done.
func (r *LoggedRank) Done(ctx context.Context) error {
	if err := r.ctl.Send(group.Wire{Type: group.MsgDone, Rank: r.cfg.Rank}); err != nil {
		return fmt.Errorf("%w: %v", ErrGroupLost, err)
	}
	r.done = true
	for !r.exiting {
		if _, _, _, err := r.step(ctx, true, false); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return r.Close()
}

// Close leaves the group.
func (r *LoggedRank) Close() error {
	if r.ctl != nil {
		r.ctl.Close()
	}
	if r.ln != nil {
		r.ln.Close()
	}
	for _, l := range r.links {
		l.mu.Lock()
		l.gen++
		if l.c != nil {
			l.c.Close()
		}
		l.mu.Unlock()
	}
	return nil
}

// step takes what arrived, and delivers a message when want and one can be.
func (r *LoggedRank) step(ctx context.Context, wait, want bool) (int, []byte, bool, error) {
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
		in := r.in
		r.in = nil
		r.mu.Unlock()
		for _, m := range in {
			switch m.f.Kind {
			case group.FrameData:
				r.lp.Receive(msglog.Msg{From: m.from, To: r.cfg.Rank, SSN: m.f.Snap, Data: m.f.Data})
			case group.FrameCtl:
				var c msglog.Ctl
				if err := json.Unmarshal(m.f.Data, &c); err == nil {
					c.From, c.To = m.from, r.cfg.Rank
					r.lp.Handle(c)
				}
			}
		}
		r.flush()
		if len(in) > 0 && !want {
			return 0, nil, false, nil // progress: let the caller look again
		}
		if want {
			if m, ok := r.lp.Next(); ok {
				r.flush()
				if r.done {
					return 0, nil, false, fmt.Errorf("message from rank %d after Done", m.From)
				}
				return m.From, m.Data, true, nil
			}
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

func (r *LoggedRank) handleCtl(w group.Wire) {
	switch w.Type {
	case "closed":
		if !r.exiting {
			r.err = fmt.Errorf("%w: coordinator: %s", ErrGroupLost, w.Error)
		}
	case group.MsgExit:
		r.exiting = true
	}
}
