package group

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/group/coord"
	"github.com/ckpt/ckpt/internal/repo"
)

// ServerConfig configures a coordinator.
type ServerConfig struct {
	Group string // the group's name: global checkpoints are GROUP@SEQ
	Ranks int
	Repo  *repo.Repository
	// Every starts a global checkpoint this often (0: only when a rank or
	// Checkpoint asks).
	Every time.Duration
	// Timeout aborts a round whose ranks have not all prepared in time
	// (default 30 s).
	Timeout time.Duration
	// Tick is the coordinator's unit of time (default 50 ms).
	Tick time.Duration
	// ExitWhenDone makes Serve return once every rank said it is done.
	ExitWhenDone bool
	// Logged: the ranks checkpoint on their own and log messages
	// (JoinLogged); a rank that goes away restarts alone, so the others
	// are not told the group is lost, and no rounds are run.
	Logged bool
	Logger *slog.Logger
}

// Server is the coordinator's network loop: it owns the listener, one
// connection per rank and the storage, and drives the coord state machine.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	events chan event
	core   *coord.Coordinator

	conns     map[int]*Conn
	addrs     []string
	done      map[int]bool
	pending   map[uint64][]chan roundReply // Checkpoint callers by round
	peersSent bool
}

type roundReply struct {
	round uint64
	err   error
}

type event struct {
	kind  string // "msg", "closed", "persisted", "checkpoint"
	conn  *Conn
	w     Wire
	g     *coord.Global
	err   error
	reply chan roundReply
}

// NewServer makes a coordinator whose recovery line is the newest global
// checkpoint of cfg.Group in cfg.Repo.
func NewServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.Ranks <= 0 {
		return nil, errors.New("coordinator: ranks must be positive")
	}
	if err := repo.ValidName(cfg.Group); err != nil {
		return nil, fmt.Errorf("coordinator: group name: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	last, err := LastGlobal(ctx, cfg.Repo, cfg.Group)
	if err != nil {
		return nil, err
	}
	if last.Round > 0 && len(last.Votes) != cfg.Ranks {
		return nil, fmt.Errorf("coordinator: the last global checkpoint of %q has %d ranks, not %d", cfg.Group, len(last.Votes), cfg.Ranks)
	}
	ticks := int((cfg.Timeout + cfg.Tick - 1) / cfg.Tick)
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("group", cfg.Group), events: make(chan event, 256),
		core:  coord.New(coord.Config{Ranks: cfg.Ranks, Timeout: ticks}, last),
		conns: map[int]*Conn{}, addrs: make([]string, cfg.Ranks), done: map[int]bool{},
		pending: map[uint64][]chan roundReply{},
	}
	if last.Round > 0 {
		s.log.Info("recovery line", "round", last.Round)
	}
	return s, nil
}

// LastGlobal reads the newest global checkpoint of group from r: the
// coordinator's durable state (Round 0 when there is none).
func LastGlobal(ctx context.Context, r *repo.Repository, group string) (coord.Global, error) {
	m, err := LastGroupManifest(ctx, r, group)
	if err != nil || m == nil {
		return coord.Global{}, err
	}
	round, err := strconv.ParseUint(m.Meta["round"], 10, 64)
	if err != nil {
		return coord.Global{}, fmt.Errorf("group checkpoint %s: bad round %q", m.Ref(), m.Meta["round"])
	}
	g := coord.Global{Round: round, Votes: make([]coord.Vote, len(m.Members))}
	chans := make([]map[int][][]byte, len(m.Members))
	for _, o := range m.Objects {
		var from, to int
		if _, err := fmt.Sscanf(o.Name, "channel/%d-%d", &from, &to); err != nil || to < 0 || to >= len(chans) {
			continue
		}
		b, err := r.ReadGroupObject(ctx, m, o.Name)
		if err != nil {
			return coord.Global{}, err
		}
		msgs, err := DecodeMessages(b)
		if err != nil {
			return coord.Global{}, fmt.Errorf("group checkpoint %s: %s: %w", m.Ref(), o.Name, err)
		}
		if chans[to] == nil {
			chans[to] = map[int][][]byte{}
		}
		chans[to][from] = msgs
	}
	for _, mb := range m.Members {
		if mb.Rank < 0 || mb.Rank >= len(g.Votes) {
			return coord.Global{}, fmt.Errorf("group checkpoint %s: member rank %d out of range", m.Ref(), mb.Rank)
		}
		st, _ := json.Marshal(chans[mb.Rank])
		g.Votes[mb.Rank] = coord.Vote{Checkpoint: mb.Checkpoint, Node: mb.Node, State: st}
	}
	return g, nil
}

// LastGroupManifest is the newest group checkpoint named group, or nil.
func LastGroupManifest(ctx context.Context, r *repo.Repository, group string) (*repo.Manifest, error) {
	ms, _, err := r.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", err)
	}
	var newest *repo.Manifest
	for _, m := range ms {
		if m.Name == group && m.Kind == repo.KindGroup && (newest == nil || m.Seq > newest.Seq) {
			newest = m
		}
	}
	return newest, nil
}

// Checkpoint starts a global checkpoint and waits for its outcome: nil
// when committed, an error saying why it aborted.
func (s *Server) Checkpoint(ctx context.Context) (uint64, error) {
	reply := make(chan roundReply, 1)
	select {
	case s.events <- event{kind: "checkpoint", reply: reply}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.round, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Serve accepts ranks on ln and runs the group until ctx ends (or, with
// ExitWhenDone, every rank is done).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conn := NewConn(c)
			go s.read(ctx, conn)
		}
	}()
	defer func() {
		for _, c := range s.conns {
			c.Close()
		}
	}()
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	var every <-chan time.Time
	if s.cfg.Every > 0 && !s.cfg.Logged {
		t := time.NewTicker(s.cfg.Every)
		defer t.Stop()
		every = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.core.Tick()
		case <-every:
			if len(s.done) == 0 {
				s.start(nil)
			}
		case ev := <-s.events:
			s.handle(ctx, ev)
		}
		if s.flush(ctx) {
			return nil
		}
	}
}

func (s *Server) read(ctx context.Context, c *Conn) {
	for {
		w, err := c.Recv()
		if err != nil {
			select {
			case s.events <- event{kind: "closed", conn: c}:
			case <-ctx.Done():
			}
			return
		}
		select {
		case s.events <- event{kind: "msg", conn: c, w: w}:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) rankOf(c *Conn) int {
	for r, x := range s.conns {
		if x == c {
			return r
		}
	}
	return -1
}

func (s *Server) start(reply chan roundReply) {
	r, err := s.core.Start()
	if err != nil {
		if reply != nil {
			reply <- roundReply{err: err}
		}
		return
	}
	s.log.Debug("round started", "round", r)
	if reply != nil {
		s.pending[r] = append(s.pending[r], reply)
	}
}

func (s *Server) handle(ctx context.Context, ev event) {
	switch ev.kind {
	case "checkpoint":
		s.start(ev.reply)
	case "closed":
		ev.conn.Close()
		if r := s.rankOf(ev.conn); r >= 0 {
			delete(s.conns, r)
			s.log.Info("rank went away", "rank", r)
			s.core.Down(r)
			if s.peersSent && !s.done[r] && !s.cfg.Logged {
				// A coordinated group restarts as a whole: tell the others
				// (ranks waiting in Done, and `ckpt run --group` members,
				// which see no peer links, rely on it).
				for _, c := range s.conns {
					c.Send(Wire{Type: MsgExit, Error: fmt.Sprintf("rank %d went away before it was done", r)})
				}
			}
			if len(s.conns) == 0 {
				s.peersSent = false // the next ranks to register are a new start of the group
			}
		}
	case "persisted":
		s.core.Persisted(ev.g.Round, *ev.g, ev.err)
	case "msg":
		w := ev.w
		r := s.rankOf(ev.conn)
		switch w.Type {
		case MsgHello:
			if w.Group != s.cfg.Group || w.Size != s.cfg.Ranks || w.Rank < 0 || w.Rank >= s.cfg.Ranks {
				ev.conn.Send(Wire{Type: MsgFailed, Error: fmt.Sprintf("this coordinator runs group %q of %d ranks", s.cfg.Group, s.cfg.Ranks)})
				ev.conn.Close()
				return
			}
			if old := s.conns[w.Rank]; old != nil && old != ev.conn {
				old.Close()
				s.core.Down(w.Rank)
			}
			s.conns[w.Rank] = ev.conn
			s.addrs[w.Rank] = w.Addr
			delete(s.done, w.Rank)
			s.log.Info("rank registered", "rank", w.Rank, "addr", w.Addr, "node", w.Node)
			s.core.Register(w.Rank)
			s.flush(ctx) // the welcome before the peers
			if len(s.conns) == s.cfg.Ranks {
				for rr, c := range s.conns {
					if rr == w.Rank || !s.peersSent {
						c.Send(Wire{Type: MsgPeers, Peers: s.addrs})
					}
				}
				s.peersSent = true
			}
		case MsgPrepared:
			if r < 0 {
				return
			}
			st, _ := json.Marshal(w.Channels)
			s.log.Debug("rank prepared", "rank", r, "round", w.Round, "checkpoint", w.Checkpoint)
			s.core.Prepared(r, w.Round, coord.Vote{Checkpoint: w.Checkpoint, Node: w.Node, State: st})
		case MsgFailed:
			if r >= 0 {
				s.core.Failed(r, w.Round, w.Error)
			}
		case MsgRequest:
			s.start(nil)
		case MsgDone:
			if r >= 0 {
				s.done[r] = true
			}
		}
	}
}

// flush carries out what the state machine asked for. It reports true
// when Serve should return.
func (s *Server) flush(ctx context.Context) bool {
	rd := s.core.Ready()
	for _, m := range rd.Msgs {
		c := s.conns[m.To]
		if c == nil {
			continue
		}
		w := Wire{Rank: m.To, Round: m.Round}
		switch m.Type {
		case coord.Welcome:
			w.Type = MsgWelcome
			if m.Vote != nil {
				w.Checkpoint = m.Vote.Checkpoint
				json.Unmarshal(m.Vote.State, &w.Channels)
			}
		case coord.Prepare:
			w.Type = MsgPrepare
		case coord.Commit:
			w.Type = MsgCommit
		case coord.Abort:
			w.Type = MsgAbort
		}
		if err := c.Send(w); err != nil {
			s.log.Warn("sending to rank", "rank", m.To, "err", err)
		}
	}
	if g := rd.Persist; g != nil {
		go func() {
			err := s.persist(ctx, g)
			select {
			case s.events <- event{kind: "persisted", g: g, err: err}:
			case <-ctx.Done():
			}
		}()
	}
	for _, res := range rd.Results {
		var err error
		if res.Committed {
			s.log.Info("global checkpoint committed", "round", res.Round)
		} else {
			err = fmt.Errorf("round %d aborted: %s", res.Round, res.Reason)
			s.log.Warn("global checkpoint aborted", "round", res.Round, "reason", res.Reason)
		}
		for _, p := range s.pending[res.Round] {
			p <- roundReply{round: res.Round, err: err}
		}
		delete(s.pending, res.Round)
	}
	if len(s.done) == s.cfg.Ranks && s.core.Round() == 0 {
		for _, c := range s.conns {
			c.Send(Wire{Type: MsgExit})
		}
		s.log.Info("every rank is done")
		if s.cfg.ExitWhenDone {
			return true
		}
		s.done = map[int]bool{}
	}
	return false
}

// persist writes the global manifest of round g: the commit point.
func (s *Server) persist(ctx context.Context, g *coord.Global) error {
	var members []repo.Member
	var objs []repo.GroupObject
	for r, v := range g.Votes {
		members = append(members, repo.Member{Rank: r, Node: v.Node, Checkpoint: v.Checkpoint})
		var chans map[int][][]byte
		if len(v.State) > 0 {
			if err := json.Unmarshal(v.State, &chans); err != nil {
				return fmt.Errorf("rank %d's channel state: %w", r, err)
			}
		}
		var from []int
		for f, ms := range chans {
			if len(ms) > 0 {
				from = append(from, f)
			}
		}
		sort.Ints(from)
		for _, f := range from {
			objs = append(objs, repo.GroupObject{Name: ChannelObject(f, r), Type: "messages", Data: EncodeMessages(chans[f])})
		}
	}
	meta := map[string]string{"round": strconv.FormatUint(g.Round, 10), "ranks": strconv.Itoa(len(g.Votes)), "protocol": "2pc+chandy-lamport"}
	m, err := s.cfg.Repo.CommitGroup(ctx, s.cfg.Group, meta, members, objs)
	if err != nil {
		return err
	}
	s.log.Debug("global manifest written", "round", g.Round, "checkpoint", m.Ref(), "channels", strings.Join(objNames(objs), ","))
	return nil
}

func objNames(objs []repo.GroupObject) []string {
	var n []string
	for _, o := range objs {
		n = append(n, o.Name)
	}
	return n
}
