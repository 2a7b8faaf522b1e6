package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/container"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/policy"
	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/progress"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
	"golang.org/x/sys/unix"
)

// Options configure Run.
type Options struct {
	Name        string        // job and checkpoint name
	Resume      bool          // resume from the newest checkpoint of Name if the job is not done
	Every       time.Duration // fixed checkpoint interval when Policy is off; 0: only on signals
	Keep        int           // checkpoints of Name to keep (0: all)
	Codec       repo.Codec    // chunk compression (zero: s2 where it pays)
	MaxRestarts int           // crashes restored before giving up
	Backoff     time.Duration // first wait before a restore; doubles each time
	Command     []string
	Logf        func(format string, a ...any)

	// Policy chooses the interval (fixed, young, auto) from the measured
	// checkpoint cost and the failures recorded in the job.
	Policy policy.Policy
	// StopSignals checkpoint and stop the program like SIGTERM (exit 143);
	// CheckpointSignals checkpoint it and continue like SIGUSR1.
	StopSignals, CheckpointSignals []os.Signal
	// Deadline: checkpoint and stop (exit 143) once the time left is below
	// the measured checkpoint cost plus Margin. Zero: none.
	Deadline time.Time
	Margin   time.Duration
	// Preempt, when set, is polled for cloud preemption notices; a notice
	// checkpoints and stops the program (exit 143).
	Preempt *policy.Preempt
	// Isolate runs the program as a container: PID 1 of new PID, mount,
	// UTS, IPC, network and time namespaces in a cgroup of its own
	// (internal/container), checkpointed and restored whole. Hostname is
	// its hostname (default: Name).
	Isolate  bool
	Hostname string
	// NoTrack turns off the write trackers kept in the program between
	// checkpoints (proccr.Tracking): every checkpoint reads all memory.
	NoTrack bool
	// Veth gives the container a veth pair to the host:
	// HOST_CIDR,CONTAINER_CIDR (container.ParseVeth). Empty: loopback only.
	Veth string
}

// ErrSupervisor wraps failures of ckpt itself (exit status 125).
var ErrSupervisor = errors.New("ckpt run failed")

// Run supervises the job until the program exits, stops on SIGTERM, or
// crashes past the restart limit. It returns the exit status ckpt run
// should exit with: the program's status, 128+N for a signal, 143 after a
// SIGTERM checkpoint.
func Run(ctx context.Context, r *repo.Repository, store Store, o Options) (int, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	host, _ := os.Hostname()
	job, err := store.Load(o.Name)
	if err != nil {
		return 0, err
	}
	resume := o.Resume && job != nil && job.State != StateDone
	if job == nil || job.State == StateDone || !o.Resume {
		job = &Job{Name: o.Name, Command: o.Command, Started: time.Now().UTC()}
	}
	if job.State == StateRunning && job.Host == host && alive(job.SupervisorPID) && job.SupervisorPID != os.Getpid() {
		return 0, fmt.Errorf("job %q is already running under ckpt run (PID %d)", o.Name, job.SupervisorPID)
	}
	job.Host, job.SupervisorPID = host, os.Getpid()
	if resume && !job.Isolate && o.Isolate && job.LastCheckpoint != "" {
		return 0, fmt.Errorf("%w: job %q was not started with --isolate: its checkpoints are of a plain process (use another --name)", ErrSupervisor, o.Name)
	}
	if resume && job.Isolate {
		o.Isolate = true // the checkpoints are a container's
		if o.Veth == "" {
			o.Veth = job.Veth
		}
	}
	var cg *container.Cgroup
	var veth *image.NetIf
	if o.Isolate {
		if o.Veth != "" {
			if veth, err = container.ParseVeth(o.Name, o.Veth); err != nil {
				return 0, err
			}
		}
		job.Veth = o.Veth
		if cg, err = container.CgroupFor(o.Name); err != nil {
			return 0, fmt.Errorf("%w: --isolate: %v", ErrSupervisor, err)
		}
		if o.Hostname == "" {
			o.Hostname = o.Name[:min(len(o.Name), 64)] // HOST_NAME_MAX
		}
		job.Isolate, job.Cgroup = true, cg.Dir
		// The group goes with the container; a later run makes it again.
		defer cg.Remove()
	}

	// Signals first, so none is lost between start and the loop.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP}, append(o.StopSignals, o.CheckpointSignals...)...)...)
	defer signal.Stop(sigs)
	defer ignoreInterrupt()()

	s := &sup{r: r, store: store, o: o, job: job, pol: o.Policy, runStart: time.Now(), cg: cg, veth: veth}
	if !o.NoTrack {
		s.track = proccr.NewTracking()
		defer s.track.Close()
	}
	if s.pol.Mode == policy.ModeOff && o.Every > 0 {
		s.pol.Mode, s.pol.Every = policy.ModeFixed, o.Every
	}
	s.baseRuntime = time.Duration(job.RuntimeSeconds * float64(time.Second))
	s.pol.SeedCost(time.Duration(job.CostSeconds * float64(time.Second)))
	if !o.Deadline.IsZero() {
		job.Deadline = o.Deadline.UTC().Format(time.RFC3339)
	}
	var pid int
	if resume {
		latest, err := r.Latest(ctx, o.Name)
		if err != nil {
			return 0, err
		}
		if latest != nil {
			o.Logf("resuming %q from %s", o.Name, latest.Ref())
			if pid, err = s.restore(ctx); err != nil {
				return 0, err
			}
		}
	}
	if pid == 0 {
		if pid, err = s.start(); err != nil {
			return 0, err
		}
	}
	return s.loop(ctx, pid, sigs)
}

type sup struct {
	r     *repo.Repository
	store Store
	o     Options
	job   *Job
	pol   policy.Policy

	// pgid is the program's process group when it leads one of its own
	// (read when it starts or is restored), else 0.
	pgid int
	// track keeps write trackers in the program between its checkpoints,
	// so that each reads only the pages written since the previous one.
	track *proccr.Tracking

	runStart    time.Time         // of this run
	baseRuntime time.Duration     // of earlier runs of the job
	cg          *container.Cgroup // the container's group (Options.Isolate)
	veth        *image.NetIf      // its veth pair (Options.Veth)
	diskFull    bool              // the last periodic checkpoint failed for want of space
}

func (s *sup) save() {
	s.job.RuntimeSeconds = (s.baseRuntime + time.Since(s.runStart)).Seconds()
	s.pol.SetHistory(s.baseRuntime+time.Since(s.runStart), s.job.Restarts)
	if s.pol.Measured() > 0 {
		s.job.CostSeconds = s.pol.Cost().Seconds()
	}
	s.job.Interval = s.pol.Interval().Seconds()
	if s.pol.Mode == policy.ModeYoung || s.pol.Mode == policy.ModeDaly {
		s.job.MTBF = s.pol.M().Seconds()
	}
	if err := s.store.Save(s.job); err != nil {
		s.o.Logf("warning: saving the job record: %v", err)
	}
}

func (s *sup) start() (int, error) {
	if s.cg != nil {
		return s.startContainer()
	}
	cmd := exec.Command(s.o.Command[0], s.o.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if !isTerminal(os.Stdin) {
		// Batch use: schedulers signal the whole process group on
		// preemption; the program must not die of the SIGTERM before ckpt
		// has checkpointed it. Interactive use keeps the terminal's group
		// so that the program can read the terminal and get ^C.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%w: starting %s: %v", ErrSupervisor, s.o.Command[0], err)
	}
	// The process is reaped by the loop through its pidfd, not by cmd.Wait.
	pid := cmd.Process.Pid
	cmd.Process.Release()
	s.job.State, s.job.PID = StateRunning, pid
	s.pgid = ownGroup(pid)
	s.save()
	return pid, nil
}

func (s *sup) restore(ctx context.Context) (int, error) {
	ms, err := s.r.Resolve(ctx, s.o.Name)
	if err != nil {
		return 0, err
	}
	// What survived of the program (a child that left its process group)
	// would hold PIDs the restore needs.
	ropts := restore.Options{KillLeftovers: true, InheritFDs: inheritedFDs()}
	defer func() {
		for _, f := range ropts.InheritFDs {
			f.Close()
		}
	}()
	if s.cg != nil {
		if err := s.cg.Create(5 * time.Second); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrSupervisor, err)
		}
		ropts.Cgroup = s.cg.Dir
	}
	var lastErr error
	for _, m := range ms {
		t0 := time.Now()
		res, err := proccr.Restore(ctx, s.r, m, ropts, nil)
		if err == nil {
			s.job.RestoreSeconds = time.Since(t0).Seconds()
			for _, w := range res.Warnings {
				s.o.Logf("warning: %s", w)
			}
			s.job.State, s.job.PID = StateRunning, res.Root
			s.pgid = ownGroup(res.Root)
			s.save()
			return res.Root, nil
		}
		lastErr = err
		if !errors.Is(err, repo.ErrCorrupt) {
			break
		}
		s.o.Logf("warning: %s is damaged, trying an older checkpoint: %v", m.Ref(), err)
	}
	return 0, fmt.Errorf("%w: restoring %q: %v", ErrSupervisor, s.o.Name, lastErr)
}

// checkpoint dumps the program; with stop it is killed after the commit.
func (s *sup) checkpoint(ctx context.Context, pid int, stop bool) error {
	t0 := time.Now()
	res, err := proccr.Dump(ctx, s.r, pid, proccr.DumpOptions{Name: s.o.Name, LeaveRunning: !stop, Container: s.cg, Veth: s.veth, Codec: s.o.Codec, Tracking: s.track})
	if err != nil && res == nil {
		return err
	}
	cost := time.Since(t0)
	s.pol.ObserveCost(cost)
	s.job.LastCost = cost.Seconds()
	s.job.Checkpoints++
	s.job.LastCheckpoint, s.job.LastTime = res.Manifest.ID(), res.Manifest.Time
	s.diskFull = false
	s.save()
	frozen := fmt.Sprintf("frozen %v", res.Frozen.Round(time.Millisecond))
	switch {
	case res.Tracked && res.PreCopied > 0:
		frozen += fmt.Sprintf(" after copying %s written since the previous checkpoint", progress.Bytes(int64(res.PreCopied)))
	case res.PreCopied > 0:
		frozen += " after a pre-copy of " + progress.Bytes(int64(res.PreCopied))
	case res.Tracked:
		frozen += fmt.Sprintf(", read %s written since the previous checkpoint or new (%s unchanged)", progress.Bytes(int64(res.Read)), progress.Bytes(int64(res.Unchanged)))
	}
	s.o.Logf("checkpoint %s (%s) in %v: %s new, %s", res.Manifest.Ref(), res.Manifest.ID()[:12], time.Since(t0).Round(time.Millisecond), progress.Bytes(res.Stats.NewBytes), frozen)
	if s.o.Keep > 0 {
		if _, rerr := s.r.Retain(ctx, s.o.Name, s.o.Keep); rerr != nil {
			s.o.Logf("warning: retention: %v", rerr)
		}
	}
	return err
}

// checkpointFailed reports a periodic checkpoint that failed; the program
// runs on. A full disk is said plainly, in full the first time only: it
// fails every checkpoint until space is freed.
func (s *sup) checkpointFailed(err error) {
	if !errors.Is(err, unix.ENOSPC) {
		s.diskFull = false
		s.o.Logf("warning: periodic checkpoint failed: %v", err)
		return
	}
	newest := "none yet"
	if s.job.LastCheckpoint != "" {
		newest = s.job.LastCheckpoint[:12]
	}
	if s.diskFull {
		s.o.Logf("warning: periodic checkpoint failed: the repository's disk is still full; the newest checkpoint is still %s", newest)
		return
	}
	s.diskFull = true
	s.o.Logf("warning: periodic checkpoint failed: the repository's disk is full; nothing of it was kept, the newest checkpoint is still %s, and the program runs on (free space and later checkpoints succeed): %v", newest, err)
}

// arm sets the periodic timer from the policy (stopped when it says 0)
// and the deadline timer from the newest cost estimate.
func (s *sup) arm(periodic, deadline *time.Timer) {
	s.pol.SetHistory(s.baseRuntime+time.Since(s.runStart), s.job.Restarts)
	if iv := s.pol.Interval(); iv > 0 {
		periodic.Reset(iv)
		if s.pol.Mode != policy.ModeFixed {
			shown := iv.Round(time.Millisecond)
			if iv >= time.Minute {
				shown = iv.Round(time.Second)
			}
			s.o.Logf("next checkpoint in %v (%s: cost %v, MTBF %v)", shown, s.pol.Mode, s.pol.Cost().Round(time.Millisecond), s.pol.M().Round(time.Second))
		}
	} else {
		periodic.Stop()
	}
	if !s.o.Deadline.IsZero() {
		deadline.Reset(time.Until(policy.StopAt(s.o.Deadline, s.pol.WorstCost(), s.o.Margin)))
	}
}

// stop checkpoints the program, kills it and marks the job stopped; ckpt
// run then exits 143 as after a SIGTERM.
func (s *sup) stop(ctx context.Context, pid int, exited <-chan unix.WaitStatus, why string) (int, error) {
	if err := s.checkpoint(ctx, pid, true); err != nil {
		s.o.Logf("checkpoint before stopping failed: %v; stopping the program anyway", err)
		unix.Kill(pid, unix.SIGKILL)
	}
	<-exited
	s.job.State, s.job.PID = StateStopped, 0
	s.job.Message = "checkpointed and stopped by " + why
	s.save()
	return 128 + int(syscall.SIGTERM), nil
}

func (s *sup) loop(ctx context.Context, pid int, sigs chan os.Signal) (int, error) {
	periodic, deadline := time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	periodic.Stop()
	deadline.Stop()
	defer periodic.Stop()
	defer deadline.Stop()
	s.arm(periodic, deadline)
	s.save()
	var preempt <-chan string
	if s.o.Preempt != nil {
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		preempt = s.o.Preempt.Watch(pctx, s.o.Logf)
	}
	backoff := s.o.Backoff
	exited, err := watchExit(pid)
	if err != nil {
		return 0, err
	}
	for {
		select {
		case <-periodic.C:
			if err := s.checkpoint(ctx, pid, false); err != nil {
				s.checkpointFailed(err)
			}
			s.arm(periodic, deadline)
			s.save()
		case <-deadline.C:
			s.o.Logf("deadline %s is %v away: checkpointing and stopping", s.o.Deadline.Format(time.RFC3339), time.Until(s.o.Deadline).Round(time.Millisecond))
			return s.stop(ctx, pid, exited, "deadline "+s.o.Deadline.UTC().Format(time.RFC3339))
		case notice := <-preempt:
			s.o.Logf("preemption notice (%s): checkpointing and stopping", notice)
			return s.stop(ctx, pid, exited, "preemption notice: "+notice)
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 || containsSignal(s.o.CheckpointSignals, sig) {
				if err := s.checkpoint(ctx, pid, false); err != nil {
					s.o.Logf("warning: checkpoint failed: %v", err)
				}
				s.arm(periodic, deadline)
				s.save()
				continue
			}
			// SIGTERM, SIGHUP, StopSignals: checkpoint and stop.
			return s.stop(ctx, pid, exited, sig.String())
		case ws := <-exited:
			switch {
			case ws.Exited():
				code := ws.ExitStatus()
				s.job.State, s.job.PID, s.job.ExitStatus = StateDone, 0, &code
				s.save()
				return code, nil
			case ws.Signaled() && (ws.Signal() == unix.SIGINT || ws.Signal() == unix.SIGPIPE):
				// Not a crash to recover: somebody interrupted it (^C), or
				// what read its output went away (prog | head), and a
				// restored program would write into the same closed pipe.
				sig := ws.Signal()
				why := map[unix.Signal]string{unix.SIGINT: "interrupted (SIGINT)", unix.SIGPIPE: "its output was closed (SIGPIPE)"}[sig]
				code := 128 + int(sig)
				s.job.State, s.job.PID, s.job.ExitStatus = StateStopped, 0, &code
				s.job.Message = why
				s.save()
				s.o.Logf("program ended: %s; job %s stopped, 'ckpt run --name %s' resumes it from its last checkpoint", why, s.o.Name, s.o.Name)
				return code, nil
			case ws.Signaled():
				sig := ws.Signal()
				if s.job.Restarts >= s.o.MaxRestarts {
					code := 128 + int(sig)
					s.job.State, s.job.PID, s.job.ExitStatus = StateFailed, 0, &code
					s.job.Message = fmt.Sprintf("died of %s after %d restarts", unix.SignalName(sig), s.job.Restarts)
					s.save()
					return code, nil
				}
				s.job.Restarts++
				s.track.Close() // its processes are gone
				s.killLeftovers(pid)
				s.o.Logf("program died of %s; restart %d of %d in %v", unix.SignalName(sig), s.job.Restarts, s.o.MaxRestarts, backoff)
				if stop, code := s.waitBackoff(ctx, backoff, sigs); stop {
					return code, ctx.Err()
				}
				backoff *= 2
				if latest, _ := s.r.Latest(ctx, s.o.Name); latest != nil {
					pid, err = s.restore(ctx)
				} else {
					s.o.Logf("no checkpoint yet: starting the program again")
					pid, err = s.start()
				}
				if err != nil {
					s.job.State, s.job.Message = StateFailed, err.Error()
					s.save()
					return 0, err
				}
				if exited, err = watchExit(pid); err != nil {
					return 0, err
				}
				s.arm(periodic, deadline)
				s.save()
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// inheritedFDs returns copies of the descriptors above 2 that ckpt run
// inherited and so passed on to the program (those without close-on-exec:
// a launcher's status pipe, a socket it handed down), keyed by their /proc
// link ("pipe:[123]"). A restored program gets them again where the image
// recorded them as leading outside, instead of /dev/null.
func inheritedFDs() map[string]*os.File {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := map[string]*os.File{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n <= 2 {
			continue
		}
		if fl, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC != 0 {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || out[link] != nil {
			continue
		}
		d, err := unix.FcntlInt(uintptr(n), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			continue
		}
		out[link] = os.NewFile(uintptr(d), link)
	}
	return out
}

// ignoreInterrupt makes ckpt itself ignore SIGINT (the terminal sends ^C
// to the program too, and the program decides) while the program keeps
// SIGINT's default: signal.Ignore would be inherited through exec, and a
// program under ckpt run could not be interrupted. A handler is reset by
// exec; its signals are dropped once the channel holds one. The returned
// function stops it.
func ignoreInterrupt() (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT)
	return func() { signal.Stop(c) }
}

// waitBackoff waits d before a restore. A stop signal meanwhile (SIGTERM,
// SIGHUP, --stop-signal) stops the job there: there is nothing running to
// checkpoint, and the newest checkpoint is where a later run resumes.
func (s *sup) waitBackoff(ctx context.Context, d time.Duration, sigs <-chan os.Signal) (stop bool, code int) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return false, 0
		case <-ctx.Done():
			return true, 0
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 || containsSignal(s.o.CheckpointSignals, sig) {
				continue // nothing runs to checkpoint
			}
			s.job.State, s.job.PID = StateStopped, 0
			s.job.Message = "stopped by " + sig.String() + " while waiting to restore after a crash"
			s.save()
			s.o.Logf("%s while waiting to restore: job %s stopped at its newest checkpoint", sig, s.o.Name)
			return true, 128 + int(syscall.SIGTERM)
		}
	}
}

// ownGroup returns pid if it leads its own process group, else 0.
func ownGroup(pid int) int {
	if g, err := unix.Getpgid(pid); err == nil && g == pid {
		return pid
	}
	return 0
}

// killLeftovers kills what is left of a program whose root died: the
// restore recreates the whole tree with its PIDs, and a child that outlived
// the root would hold its own. Only a program in a process group of its
// own (led by the root: batch use, or restored so) is killed by group;
// one in the terminal's group shares it with ckpt.
func (s *sup) killLeftovers(root int) {
	if s.cg != nil {
		return // a container's PID 1 takes its namespace with it
	}
	if s.pgid == root {
		_ = unix.Kill(-root, unix.SIGKILL)
	}
}

// watchExit reports the wait status of pid once it exits. Only exits are
// collected: a blocking wait4 could swallow the ptrace stops of a dump, so
// the process is watched through a pidfd and reaped after it exited.
func watchExit(pid int) (<-chan unix.WaitStatus, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		// Already gone and reaped? Then nothing can be reported.
		return nil, fmt.Errorf("%w: watching process %d: %v", ErrSupervisor, pid, err)
	}
	ch := make(chan unix.WaitStatus, 1)
	go func() {
		defer unix.Close(fd)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 1000)
			if err == unix.EINTR || n == 0 {
				continue
			}
			break
		}
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil { // reaped elsewhere: all that is known is that it is gone
				ws = unix.WaitStatus(unix.SIGKILL)
			}
			break
		}
		ch <- ws
	}()
	return ch, nil
}

func containsSignal(list []os.Signal, sig os.Signal) bool {
	for _, x := range list {
		if x == sig {
			return true
		}
	}
	return false
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
