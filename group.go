package ckpt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/group/cl"
	"github.com/ckpt/ckpt/internal/repo"
)

// ErrGroupLost: the coordinator or a peer rank went away. A coordinated
// group restarts as a whole from its last global checkpoint: exit and let
// the launcher start every rank again (docs/GROUP.md).
var ErrGroupLost = errors.New("group lost: the coordinator or a peer went away")

// GroupConfig says how a job joins a group of ranks (JoinGroup).
type GroupConfig struct {
	Coordinator string // the coordinator's host:port
	Group       string // the group's name (its global checkpoints are GROUP@SEQ)
	Rank, Size  int    // this rank, 0 ≤ Rank < Size
	// Listen is where peers connect (default "127.0.0.1:0"); Advertise is
	// the address they are told (default: the listener's address).
	Listen, Advertise string
	Node              string // shown in the group manifest (default: host name)
	// KeepAll keeps the job's checkpoints of every round; by default a
	// committed round removes the rank's older checkpoints.
	KeepAll bool
	// Timeout bounds joining: registering, restoring, connecting to the
	// peers (default 1 minute).
	Timeout time.Duration
	// Trace keeps a CIC rank's events (CICRank.Events).
	Trace bool
}

// Rank is a Job's membership in a group: message passing between ranks
// over TCP, and global checkpoints. A global checkpoint is a two-phase
// commit run by the coordinator whose prepare phase is a Chandy-Lamport
// snapshot: the rank records its protected values at a consistent point —
// inside Recv, TryRecv, Poll or Done, where the program has applied every
// message it received and sent — while messages keep flowing; those caught
// in flight are recorded in the global checkpoint and delivered again
// after a restart.
//
// The program must call one of those methods regularly (a rank that does
// not holds the round up until the coordinator's timeout aborts it), and
// must not use the Job's Checkpoint or Restore itself. A Rank is used by
// one goroutine.
type Rank struct {
	job  *Job
	cfg  GroupConfig
	ctl  *group.Conn
	ln   net.Listener
	out  []*peerLink
	snap *cl.Process

	ctlCh   chan group.Wire
	commits chan localCommit

	inbox

	replay []inMsg // recorded channel messages to deliver first after a restore

	restored  uint64 // the round restored (0: fresh start)
	committed uint64
	prep      map[uint64]*prepState
	done      bool // Done was called: peers leaving is expected
	exiting   bool
	err       error
}

type peerLink struct {
	mu sync.Mutex
	c  net.Conn
}

type inMsg struct {
	from int
	f    group.Frame
	err  error
}

// inbox holds what a rank's peer links brought: their reading goroutines
// push, the rank's goroutine takes under mu and waits on notify.
type inbox struct {
	mu     sync.Mutex
	in     []inMsg
	notify chan struct{} // buffered 1: a push since the last wait
}

func (b *inbox) push(m inMsg) {
	b.mu.Lock()
	b.in = append(b.in, m)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

type localCommit struct {
	round uint64
	id    string
	err   error
}

type prepState struct {
	id     string
	chans  map[int][][]byte
	local  bool // commit done
	marked bool // every marker in
}

// JoinGroup registers the job as a rank of a group with its coordinator,
// restores the group's last global checkpoint if there is one (the
// protected values, and the messages that were in flight to this rank),
// and connects to every other rank. Protect every value before.
func (j *Job) JoinGroup(ctx context.Context, cfg GroupConfig) (*Rank, error) {
	if err := cfg.check("JoinGroup"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// The group decides which checkpoints are kept (retention would
	// otherwise remove a member of the recovery line after a few aborted
	// rounds).
	j.mu.Lock()
	j.opts.keep = 0
	j.mu.Unlock()

	r := &Rank{job: j, cfg: cfg, ctlCh: make(chan group.Wire, 64), commits: make(chan localCommit, 4),
		inbox: inbox{notify: make(chan struct{}, 1)}, prep: map[uint64]*prepState{}}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	reg, err := register(ctx, cfg, "JoinGroup")
	if err != nil {
		return nil, err
	}
	r.ln, r.ctl = reg.ln, reg.ctl
	w, err := r.ctl.Recv()
	if err == nil && w.Type == group.MsgFailed {
		err = errors.New(w.Error)
	}
	if err == nil && w.Type != group.MsgWelcome {
		err = fmt.Errorf("unexpected %q", w.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("JoinGroup: registering with the coordinator: %w", err)
	}
	if w.Checkpoint != "" {
		if err := j.restoreFrom(ctx, w.Checkpoint); err != nil {
			return nil, fmt.Errorf("JoinGroup: restoring round %d: %w", w.Round, err)
		}
		r.restored, r.committed = w.Round, w.Round
		var from []int
		for f := range w.Channels {
			from = append(from, f)
		}
		sort.Ints(from)
		for _, f := range from {
			for _, m := range w.Channels[f] {
				r.replay = append(r.replay, inMsg{from: f, f: group.Frame{Kind: group.FrameData, Data: m}})
			}
		}
		j.log.Info("joined group from its global checkpoint", "group", cfg.Group, "rank", cfg.Rank, "round", w.Round, "in_flight", len(r.replay))
	}
	w, err = r.ctl.Recv()
	if err == nil && w.Type != group.MsgPeers {
		err = fmt.Errorf("unexpected %q", w.Type)
	}
	if err == nil && len(w.Peers) != cfg.Size {
		err = fmt.Errorf("%d peers for %d ranks", len(w.Peers), cfg.Size)
	}
	if err != nil {
		return nil, fmt.Errorf("JoinGroup: waiting for the other ranks: %w", err)
	}
	reg.registered()
	if r.out, err = linkPeers(ctx, r.ln, cfg.Rank, w.Peers, r.push); err != nil {
		return nil, fmt.Errorf("JoinGroup: connecting to the other ranks: %w", err)
	}
	var in, out []int
	for p := range cfg.Size {
		if p != cfg.Rank {
			in, out = append(in, p), append(out, p)
		}
	}
	r.snap = cl.New(cfg.Rank, in, out)
	r.snap.Forget(r.restored)
	go readCtl(r.ctl, r.ctlCh)
	ok = true
	return r, nil
}

// linkPeers dials every other rank (the links this rank sends on, by
// rank) and accepts every other rank's dial; what arrives on an accepted
// link is pushed, ending with an inMsg holding the read error.
func linkPeers(ctx context.Context, ln net.Listener, self int, addrs []string, push func(inMsg)) ([]*peerLink, error) {
	size := len(addrs)
	out := make([]*peerLink, size)
	n := size - 1
	accepted := make(chan error, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			f, err := group.ReadFrame(c)
			from, _, herr := group.ParseHello(f)
			if err != nil || herr != nil || from < 0 || from >= size {
				c.Close()
				accepted <- fmt.Errorf("bad hello from %s", c.RemoteAddr())
				return
			}
			go func() {
				defer c.Close()
				for {
					f, err := group.ReadFrame(c)
					if err != nil {
						push(inMsg{from: from, err: err})
						return
					}
					push(inMsg{from: from, f: f})
				}
			}()
			accepted <- nil
		}
	}()
	var d net.Dialer
	for p, a := range addrs {
		if p == self {
			continue
		}
		c, err := d.DialContext(ctx, "tcp", a)
		if err != nil {
			return out, fmt.Errorf("rank %d at %s: %w", p, a, err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		if err := group.WriteFrame(c, group.Hello(self, "")); err != nil {
			c.Close()
			return out, err
		}
		out[p] = &peerLink{c: c}
	}
	for range n {
		select {
		case err := <-accepted:
			if err != nil {
				return out, err
			}
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// readCtl passes the coordinator's messages to ch, ending with one of
// type "closed" holding the read error.
func readCtl(ctl *group.Conn, ch chan<- group.Wire) {
	for {
		w, err := ctl.Recv()
		if err != nil {
			ch <- group.Wire{Type: "closed", Error: err.Error()}
			return
		}
		ch <- w
	}
}

// Restored is the round of the global checkpoint the rank was restored
// from, 0 when the group started fresh.
func (r *Rank) Restored() uint64 { return r.restored }

// Committed is the last committed global checkpoint's round.
func (r *Rank) Committed() uint64 { return r.committed }

// ID is the rank's number; Size the group's.
func (r *Rank) ID() int   { return r.cfg.Rank }
func (r *Rank) Size() int { return r.cfg.Size }

// Send sends data to rank to (FIFO per pair of ranks). It does not wait
// for the receiver.
func (r *Rank) Send(to int, data []byte) error {
	if r.err != nil {
		return r.err
	}
	if err := r.cfg.checkSend(to, data); err != nil {
		return err
	}
	return r.write(to, group.Frame{Kind: group.FrameData, Data: data})
}

// checkSend refuses a message to no peer, or too large for a frame.
func (cfg *GroupConfig) checkSend(to int, data []byte) error {
	if to < 0 || to >= cfg.Size || to == cfg.Rank {
		return fmt.Errorf("send to rank %d: no such peer", to)
	}
	if len(data) > group.MaxMessage {
		return fmt.Errorf("send to rank %d: %d bytes exceed %d", to, len(data), group.MaxMessage)
	}
	return nil
}

func (r *Rank) write(to int, f group.Frame) error {
	l := r.out[to]
	l.mu.Lock()
	err := group.WriteFrame(l.c, f)
	l.mu.Unlock()
	if err != nil {
		r.fail(fmt.Errorf("%w: sending to rank %d: %v", ErrGroupLost, to, err))
	}
	return r.err
}

func (r *Rank) fail(err error) {
	if r.err == nil {
		r.err = err
		r.job.log.Warn("group failed", "rank", r.cfg.Rank, "err", err)
	}
}

// Recv waits for the next message and returns its sender and bytes. It is
// a consistent point: a global checkpoint may record the protected values
// while Recv runs.
func (r *Rank) Recv(ctx context.Context) (from int, data []byte, err error) {
	from, data, ok, err := r.step(ctx, true, true)
	if err == nil && !ok {
		err = ctx.Err()
	}
	return from, data, err
}

// TryRecv returns the next message if one has arrived (ok false if not).
// It is a consistent point, like Recv.
func (r *Rank) TryRecv() (from int, data []byte, ok bool, err error) {
	return r.step(context.Background(), false, true)
}

// Poll serves the group (global checkpoints) without receiving: a
// consistent point for a rank that computes for long between messages.
func (r *Rank) Poll() error {
	_, _, _, err := r.step(context.Background(), false, false)
	return err
}

// RequestCheckpoint asks the coordinator to take a global checkpoint now.
func (r *Rank) RequestCheckpoint() error {
	if err := r.ctl.Send(group.Wire{Type: group.MsgRequest, Rank: r.cfg.Rank}); err != nil {
		r.fail(fmt.Errorf("%w: %v", ErrGroupLost, err))
	}
	return r.err
}

// Done says this rank has finished (it sends and expects no more
// messages) and serves global checkpoints until every rank is done; then
// it leaves the group. A message that arrives meanwhile is an error.
func (r *Rank) Done(ctx context.Context) error {
	if r.err != nil {
		return r.err
	}
	if err := r.ctl.Send(group.Wire{Type: group.MsgDone, Rank: r.cfg.Rank}); err != nil {
		return fmt.Errorf("%w: %v", ErrGroupLost, err)
	}
	r.done = true
	for !r.exiting {
		from, _, ok, err := r.step(ctx, true, true)
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
	r.close()
	return nil
}

// Close leaves the group at once (the other ranks see it go away).
func (r *Rank) Close() error {
	r.close()
	return nil
}

func (r *Rank) close() { closeLinks(r.ctl, r.ln, r.out) }

// closeLinks closes what a Rank or CICRank has open; any may be missing
// (a join that failed part way).
func closeLinks(ctl *group.Conn, ln net.Listener, out []*peerLink) {
	if ctl != nil {
		ctl.Close()
	}
	if ln != nil {
		ln.Close()
	}
	for _, l := range out {
		if l != nil {
			l.c.Close()
		}
	}
}

// step serves the group and returns a message when want and one is there.
func (r *Rank) step(ctx context.Context, wait, want bool) (int, []byte, bool, error) {
	for {
		if r.err != nil {
			return 0, nil, false, r.err
		}
		// Control and local commits first: a prepare is served here.
		select {
		case w := <-r.ctlCh:
			r.handleCtl(ctx, w)
			continue
		case c := <-r.commits:
			r.handleCommit(c)
			continue
		default:
		}
		if len(r.replay) > 0 {
			// Messages recorded in flight by the restored global
			// checkpoint come before anything the network brings (they
			// were first on their channels), and a snapshot taken now
			// must record them as in flight again.
			if !want {
				return 0, nil, false, nil
			}
			m := r.replay[0]
			r.replay = r.replay[1:]
			r.snap.Receive(m.from, cl.Msg{Data: m.f.Data})
			r.apply(ctx)
			return m.from, m.f.Data, true, nil
		}
		r.mu.Lock()
		var m inMsg
		have := len(r.in) > 0
		if have {
			m = r.in[0]
			if !want && m.err == nil && m.f.Kind == group.FrameData {
				// Poll leaves messages for Recv.
				r.mu.Unlock()
				return 0, nil, false, nil
			}
			r.in = r.in[1:]
		}
		r.mu.Unlock()
		if have {
			if m.err != nil {
				if r.exiting || r.done {
					continue // the peer finished; the coordinator says whether all did
				}
				r.fail(fmt.Errorf("%w: rank %d: %v", ErrGroupLost, m.from, m.err))
				continue
			}
			switch m.f.Kind {
			case group.FrameMarker:
				r.snap.Receive(m.from, cl.Msg{Marker: true, Snap: m.f.Snap})
				r.apply(ctx)
				continue
			case group.FrameData:
				r.snap.Receive(m.from, cl.Msg{Data: m.f.Data})
				r.apply(ctx)
				return m.from, m.f.Data, true, nil
			}
			continue
		}
		if !wait || r.exiting {
			return 0, nil, false, nil
		}
		select {
		case w := <-r.ctlCh:
			r.handleCtl(ctx, w)
		case c := <-r.commits:
			r.handleCommit(c)
		case <-r.notify:
		case <-ctx.Done():
			return 0, nil, false, nil
		}
	}
}

func (r *Rank) handleCtl(ctx context.Context, w group.Wire) {
	switch w.Type {
	case "closed":
		if !r.exiting {
			r.fail(fmt.Errorf("%w: coordinator: %s", ErrGroupLost, w.Error))
		}
	case group.MsgPrepare:
		r.snap.Initiate(w.Round)
		r.apply(ctx)
	case group.MsgAbort:
		delete(r.prep, w.Round)
		r.snap.Forget(w.Round)
	case group.MsgCommit:
		p := r.prep[w.Round]
		r.committed = w.Round
		r.snap.Forget(w.Round)
		for k := range r.prep {
			if k <= w.Round {
				delete(r.prep, k)
			}
		}
		if p != nil && !r.cfg.KeepAll {
			r.retain(ctx, p.id)
		}
	case group.MsgExit:
		if w.Error != "" {
			r.fail(fmt.Errorf("%w: %s", ErrGroupLost, w.Error))
			return
		}
		r.exiting = true
	}
}

// apply does what the snapshot state machine asks.
func (r *Rank) apply(ctx context.Context) {
	rd := r.snap.Ready()
	for _, round := range rd.Record {
		r.prep[round] = &prepState{}
		if err := r.job.Checkpoint(ctx); err != nil {
			r.ctl.Send(group.Wire{Type: group.MsgFailed, Rank: r.cfg.Rank, Round: round, Error: err.Error()})
			delete(r.prep, round)
			continue
		}
		go func() {
			err := r.job.Wait()
			info, _ := r.job.LastCommit()
			r.commits <- localCommit{round: round, id: info.ID, err: err}
		}()
	}
	for _, m := range rd.Markers {
		r.write(m.To, group.Frame{Kind: group.FrameMarker, Snap: m.Snap})
	}
	for _, l := range rd.Done {
		if p := r.prep[l.Snap]; p != nil {
			p.chans, p.marked = l.Channels, true
			r.maybePrepared(l.Snap)
		}
	}
}

func (r *Rank) handleCommit(c localCommit) {
	p := r.prep[c.round]
	if p == nil {
		return
	}
	if c.err != nil {
		r.ctl.Send(group.Wire{Type: group.MsgFailed, Rank: r.cfg.Rank, Round: c.round, Error: c.err.Error()})
		delete(r.prep, c.round)
		return
	}
	p.id, p.local = c.id, true
	r.maybePrepared(c.round)
}

func (r *Rank) maybePrepared(round uint64) {
	p := r.prep[round]
	if !p.local || !p.marked {
		return
	}
	chans := map[int][][]byte{}
	for f, ms := range p.chans {
		if len(ms) > 0 {
			chans[f] = ms
		}
	}
	if err := r.ctl.Send(group.Wire{Type: group.MsgPrepared, Rank: r.cfg.Rank, Round: round, Checkpoint: p.id, Node: r.cfg.Node, Channels: chans}); err != nil {
		r.fail(fmt.Errorf("%w: %v", ErrGroupLost, err))
	}
}

// retain removes the job's checkpoints older than keep (the rank's
// member of the new recovery line).
func (r *Rank) retain(ctx context.Context, keep string) {
	rp := r.job.repo
	m, err := rp.Load(ctx, keep)
	if err != nil {
		return
	}
	ms, _, err := rp.List(ctx)
	if err != nil {
		return
	}
	for _, o := range ms {
		if o.Name == m.Name && o.Kind == repo.KindLibrary && o.Seq < m.Seq {
			if err := rp.Remove(ctx, o.ID()); err != nil {
				r.job.log.Warn("removing an old rank checkpoint", "id", o.ID(), "err", err)
			}
		}
	}
}

// restoreFrom loads the checkpoint id into the protected values.
func (j *Job) restoreFrom(ctx context.Context, id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	if !j.waitInflight(ctx) {
		return ctx.Err()
	}
	m, err := j.repo.Load(ctx, id)
	if err != nil {
		return err
	}
	if m.Name != j.name || m.Kind != repo.KindLibrary {
		return fmt.Errorf("checkpoint %s is %s of kind %s, not one of job %q", id[:min(12, len(id))], m.Ref(), m.Kind, j.name)
	}
	objs := make([]*repo.Object, len(j.vars))
	for i, v := range j.vars {
		objs[i] = m.Object(v.name)
		if err := v.check(m, objs[i]); err != nil {
			return err
		}
	}
	if err := j.load(ctx, m, objs); err != nil {
		return err
	}
	j.parent = m
	return nil
}

// registration is a rank's listener for its peers and its connection to
// the coordinator, while it waits for the coordinator's answers.
type registration struct {
	ln   net.Listener
	adv  string // the address peers are told
	ctl  *group.Conn
	c    net.Conn
	stop func() bool
}

// register listens for peers on cfg.Listen and says hello to the
// coordinator. Until registered is called, the end of ctx interrupts the
// wait for the coordinator's answers. On error nothing is left open.
func register(ctx context.Context, cfg GroupConfig, op string) (*registration, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s: listening for peers: %w", op, err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", cfg.Coordinator)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: connecting to the coordinator: %w", op, err)
	}
	ctl := group.NewConn(c)
	if err := ctl.Send(group.Wire{Type: group.MsgHello, Group: cfg.Group, Rank: cfg.Rank, Size: cfg.Size, Addr: adv, Node: cfg.Node}); err != nil {
		ln.Close()
		ctl.Close()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &registration{ln: ln, adv: adv, ctl: ctl, c: c,
		stop: context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })}, nil
}

// peers waits for the coordinator's list of the ranks' addresses, by
// rank, passing over what comes before it.
func (g *registration) peers(size int) ([]string, error) {
	var w group.Wire
	var err error
	for err == nil && w.Type != group.MsgPeers {
		w, err = g.ctl.Recv()
		if err == nil && w.Type == group.MsgFailed {
			err = errors.New(w.Error)
		}
	}
	if err == nil && len(w.Peers) != size {
		err = fmt.Errorf("%d peers for %d ranks", len(w.Peers), size)
	}
	return w.Peers, err
}

// registered ends the interruption by ctx: the rank is in the group.
func (g *registration) registered() {
	g.stop()
	g.c.SetDeadline(time.Time{})
}

// check refuses a rank outside the group and fills in the defaults.
func (cfg *GroupConfig) check(op string) error {
	if cfg.Size <= 0 || cfg.Rank < 0 || cfg.Rank >= cfg.Size {
		return fmt.Errorf("%s: rank %d of %d", op, cfg.Rank, cfg.Size)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	return nil
}
