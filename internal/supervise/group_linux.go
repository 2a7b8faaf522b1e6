package supervise

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/group"
	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
	"golang.org/x/sys/unix"
)

// GroupOptions make `ckpt run` a member of a group of unmodified
// processes checkpointed as one (`ckpt run --group`, docs/GROUP.md).
type GroupOptions struct {
	Coordinator string // host:port of `ckpt coordinator`
	Group       string
	Rank, Ranks int
	Node        string        // shown in the group manifest (default: host name)
	Timeout     time.Duration // bounds reaching the coordinator and registering (default 1 minute)
	// StopTimeout bounds the wait for the global checkpoint asked for on
	// SIGTERM or SIGHUP (default 30 s).
	StopTimeout time.Duration
}

// ExitGroupLost is the exit status of a member whose group was lost (a
// member or the coordinator went away): its program was killed, and the
// whole group resumes from its last global checkpoint when launched again.
const ExitGroupLost = 125

// RunGroup runs the program as rank g.Rank of group g.Group. It registers
// with the coordinator; when the group has a committed global checkpoint
// the program is restored from this rank's member of it, otherwise it
// starts fresh. Each round the coordinator starts, the program's tree is
// dumped while it keeps running (frozen only during the dump) and the
// checkpoint is reported as prepared; the coordinator's global manifest
// is the commit point. A crash of the program is not restored locally (the
// others would be ahead of it): the member leaves, the coordinator tells
// the others the group is lost, and every member kills its program and
// exits with ExitGroupLost. When the program exits by itself the member
// says it is done and exits with the program's status once every member
// is (no more rounds are taken after the first member is done). SIGTERM
// or SIGHUP asks the coordinator for a round and stops the program (exit
// 143) once it committed or aborted, or after g.StopTimeout.
func RunGroup(ctx context.Context, r *repo.Repository, store Store, o Options, g GroupOptions) (int, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if g.Ranks <= 0 || g.Rank < 0 || g.Rank >= g.Ranks {
		return 0, fmt.Errorf("group %s: rank %d of %d ranks", g.Group, g.Rank, g.Ranks)
	}
	if o.Isolate {
		return 0, errors.New("--group with --isolate is not supported yet")
	}
	if g.Node == "" {
		g.Node, _ = os.Hostname()
	}
	if g.Timeout <= 0 {
		g.Timeout = time.Minute
	}
	if g.StopTimeout <= 0 {
		g.StopTimeout = 30 * time.Second
	}
	o.Keep = 0 // the member of the recovery line is removed only once a newer round commits
	host, _ := os.Hostname()
	job, err := store.Load(o.Name)
	if err != nil {
		return 0, err
	}
	if job != nil && job.State == StateRunning && job.Host == host && alive(job.SupervisorPID) && job.SupervisorPID != os.Getpid() {
		return 0, fmt.Errorf("job %q is already running under ckpt run (PID %d)", o.Name, job.SupervisorPID)
	}
	job = &Job{Name: o.Name, Command: o.Command, Started: time.Now().UTC(), Host: host, SupervisorPID: os.Getpid()}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)
	defer ignoreInterrupt()()

	rctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	// Launchers start the coordinator and the members in any order
	// (srun after a background coordinator, pods of a Job): keep trying
	// until the registration timeout.
	var d net.Dialer
	var c net.Conn
	for {
		c, err = d.DialContext(rctx, "tcp", g.Coordinator)
		if err == nil {
			break
		}
		select {
		case <-rctx.Done():
			return 0, fmt.Errorf("%w: group %s: connecting to the coordinator at %s: %v", ErrSupervisor, g.Group, g.Coordinator, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	ctl := group.NewConn(c)
	defer ctl.Close()
	if err := ctl.Send(group.Wire{Type: group.MsgHello, Group: g.Group, Rank: g.Rank, Size: g.Ranks, Node: g.Node}); err != nil {
		return 0, fmt.Errorf("%w: group %s: %v", ErrSupervisor, g.Group, err)
	}
	stop := context.AfterFunc(rctx, func() { c.SetDeadline(time.Now()) })
	w, err := ctl.Recv()
	if err == nil && w.Type == group.MsgFailed {
		err = errors.New(w.Error)
	}
	if err == nil && w.Type != group.MsgWelcome {
		err = fmt.Errorf("unexpected %q", w.Type)
	}
	stop()
	c.SetDeadline(time.Time{})
	if err != nil {
		return 0, fmt.Errorf("%w: group %s: registering with the coordinator at %s: %v", ErrSupervisor, g.Group, g.Coordinator, err)
	}

	s := &sup{r: r, store: store, o: o, job: job, pol: o.Policy, runStart: time.Now()}
	if !o.NoTrack {
		s.track = proccr.NewTracking()
		defer s.track.Close()
	}
	var pid int
	committed := w.Round
	if w.Checkpoint != "" {
		o.Logf("group %s: restoring rank %d from global checkpoint round %d (%s)", g.Group, g.Rank, w.Round, short(w.Checkpoint))
		if pid, err = s.restoreID(ctx, w.Checkpoint); err != nil {
			return 0, err
		}
	} else {
		o.Logf("group %s: rank %d of %d starts fresh (no global checkpoint)", g.Group, g.Rank, g.Ranks)
		if pid, err = s.start(); err != nil {
			return 0, err
		}
	}
	exited, err := watchExit(pid)
	if err != nil {
		return 0, err
	}
	ctlCh := make(chan group.Wire, 16)
	go func() {
		for {
			w, err := ctl.Recv()
			if err != nil {
				ctlCh <- group.Wire{Type: "closed", Error: err.Error()}
				return
			}
			ctlCh <- w
		}
	}()
	// kill ends the program (if still running) and records the job as
	// stopped, saying why.
	kill := func(msg string) {
		if pid != 0 {
			unix.Kill(pid, unix.SIGKILL)
			<-exited
			s.killLeftovers(pid) // children would hold PIDs the next launch restores
		}
		s.job.State, s.job.PID = StateStopped, 0
		s.job.Message = msg
		s.save()
	}
	lost := func(why string) (int, error) {
		o.Logf("group %s lost: %s; killing the program (the group resumes from round %d when launched again)", g.Group, why, committed)
		kill("group lost: " + why)
		return ExitGroupLost, nil
	}
	var done *int                   // the program's exit status once it exited by itself
	prepared := map[uint64]string{} // this member's checkpoint of each round
	var stopping os.Signal          // SIGTERM or SIGHUP came: stop after the next round's outcome
	var stopTimer <-chan time.Time
	stopNow := func(outcome string) (int, error) {
		o.Logf("group %s: stopping on %s (%s); the group resumes from round %d when launched again", g.Group, stopping, outcome, committed)
		kill(fmt.Sprintf("stopped by %s after round %d", stopping, committed))
		return 128 + int(syscall.SIGTERM), nil
	}
	for {
		select {
		case w := <-ctlCh:
			switch w.Type {
			case "closed":
				if done != nil {
					return *done, nil // the coordinator went away after every member was done
				}
				return lost("the coordinator went away: " + w.Error)
			case group.MsgPrepare:
				if done != nil {
					ctl.Send(group.Wire{Type: group.MsgFailed, Rank: g.Rank, Round: w.Round, Error: "the program has exited"})
					continue
				}
				if err := s.checkpoint(ctx, pid, false); err != nil {
					o.Logf("group %s round %d: checkpoint failed: %v", g.Group, w.Round, err)
					ctl.Send(group.Wire{Type: group.MsgFailed, Rank: g.Rank, Round: w.Round, Error: err.Error()})
					continue
				}
				prepared[w.Round] = s.job.LastCheckpoint
				if err := ctl.Send(group.Wire{Type: group.MsgPrepared, Rank: g.Rank, Round: w.Round, Checkpoint: s.job.LastCheckpoint, Node: g.Node}); err != nil {
					return lost("the coordinator went away: " + err.Error())
				}
			case group.MsgCommit:
				committed = w.Round
				o.Logf("group %s: global checkpoint round %d committed", g.Group, w.Round)
				if id := prepared[w.Round]; id != "" {
					s.retainGroup(ctx, id)
				}
				for k := range prepared {
					if k <= w.Round {
						delete(prepared, k)
					}
				}
				if stopping != nil {
					return stopNow(fmt.Sprintf("round %d committed", w.Round))
				}
			case group.MsgAbort:
				o.Logf("group %s: round %d aborted; the recovery line stays round %d", g.Group, w.Round, committed)
				if stopping != nil {
					return stopNow(fmt.Sprintf("round %d aborted", w.Round))
				}
			case group.MsgExit:
				if done != nil {
					return *done, nil
				}
				if w.Error != "" {
					return lost(w.Error)
				}
			}
		case ws := <-exited:
			pid = 0
			if ws.Signaled() {
				code := 128 + int(ws.Signal())
				s.job.State, s.job.PID, s.job.ExitStatus = StateFailed, 0, &code
				s.job.Message = fmt.Sprintf("died of %s; the group resumes from round %d when launched again", unix.SignalName(ws.Signal()), committed)
				s.save()
				o.Logf("group %s: the program died of %s; leaving the group", g.Group, unix.SignalName(ws.Signal()))
				return code, nil
			}
			code := ws.ExitStatus()
			done = &code
			s.job.State, s.job.PID, s.job.ExitStatus = StateDone, 0, &code
			s.save()
			if err := ctl.Send(group.Wire{Type: group.MsgDone, Rank: g.Rank}); err != nil {
				return code, nil
			}
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				// A global checkpoint now: the coordinator runs it.
				ctl.Send(group.Wire{Type: group.MsgRequest, Rank: g.Rank})
				continue
			}
			if done != nil {
				return *done, nil
			}
			if stopping != nil {
				return stopNow("a second signal") // do not wait any longer
			}
			// A preemption or the end of the walltime: have the group
			// checkpointed first (every member of a SLURM step gets the
			// signal at once; their requests make one round), then stop.
			stopping = sig
			o.Logf("group %s: %s: asking for a global checkpoint before stopping", g.Group, sig)
			if err := ctl.Send(group.Wire{Type: group.MsgRequest, Rank: g.Rank}); err != nil {
				return stopNow("the coordinator is gone")
			}
			stopTimer = time.After(g.StopTimeout)
		case <-stopTimer:
			return stopNow(fmt.Sprintf("no round ended within %v", g.StopTimeout))
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// restoreID restores the checkpoint id of this job.
func (s *sup) restoreID(ctx context.Context, id string) (int, error) {
	m, err := s.r.Load(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("%w: loading the group's checkpoint %s: %v", ErrSupervisor, short(id), err)
	}
	if m.Kind != repo.KindProcess || m.Name != s.o.Name {
		return 0, fmt.Errorf("%w: the group's checkpoint %s is %s of kind %s, not a process checkpoint of %s", ErrSupervisor, short(id), m.Ref(), m.Kind, s.o.Name)
	}
	t0 := time.Now()
	res, err := proccr.Restore(ctx, s.r, m, restore.Options{KillLeftovers: true}, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: restoring %s: %v", ErrSupervisor, m.Ref(), err)
	}
	for _, w := range res.Warnings {
		s.o.Logf("warning: %s", w)
	}
	s.job.RestoreSeconds = time.Since(t0).Seconds()
	s.job.State, s.job.PID = StateRunning, res.Root
	s.pgid = ownGroup(res.Root)
	s.save()
	return res.Root, nil
}

// retainGroup removes the job's checkpoints older than keep, its member
// of the round just committed (those of aborted rounds included).
func (s *sup) retainGroup(ctx context.Context, keepID string) {
	keep, err := s.r.Load(ctx, keepID)
	if err != nil {
		return
	}
	ms, _, err := s.r.List(ctx)
	if err != nil {
		return
	}
	for _, m := range ms {
		if m.Name == keep.Name && m.Kind == repo.KindProcess && m.Seq < keep.Seq {
			if err := s.r.Remove(ctx, m.ID()); err != nil {
				s.o.Logf("warning: removing %s: %v", m.Ref(), err)
			}
		}
	}
}

func short(id string) string { return id[:min(12, len(id))] }
