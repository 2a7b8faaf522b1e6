package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/proccr"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/restore"
	"golang.org/x/sys/unix"
)

// Options configure Run.
type Options struct {
	Name        string        // job and checkpoint name
	Resume      bool          // resume from the newest checkpoint of Name if the job is not done
	Every       time.Duration // checkpoint interval; 0: only on signals
	Keep        int           // checkpoints of Name to keep (0: all)
	MaxRestarts int           // crashes restored before giving up
	Backoff     time.Duration // first wait before a restore; doubles each time
	Command     []string
	Logf        func(format string, a ...any)
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

	// Signals first, so none is lost between start and the loop.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)
	signal.Ignore(syscall.SIGINT) // the terminal sends it to the program too; it decides

	s := &sup{r: r, store: store, o: o, job: job}
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
}

func (s *sup) save() {
	if err := s.store.Save(s.job); err != nil {
		s.o.Logf("warning: saving the job record: %v", err)
	}
}

func (s *sup) start() (int, error) {
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
	s.save()
	return pid, nil
}

func (s *sup) restore(ctx context.Context) (int, error) {
	ms, err := s.r.Resolve(ctx, s.o.Name)
	if err != nil {
		return 0, err
	}
	var lastErr error
	for _, m := range ms {
		res, err := proccr.Restore(ctx, s.r, m, restore.Options{}, nil)
		if err == nil {
			for _, w := range res.Warnings {
				s.o.Logf("warning: %s", w)
			}
			s.job.State, s.job.PID = StateRunning, res.Root
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
	res, err := proccr.Dump(ctx, s.r, pid, proccr.DumpOptions{Name: s.o.Name, LeaveRunning: !stop})
	if err != nil && res == nil {
		return err
	}
	s.job.Checkpoints++
	s.job.LastCheckpoint, s.job.LastTime = res.Manifest.ID(), res.Manifest.Time
	s.save()
	s.o.Logf("checkpoint %s (%s) in %v: %d MiB new", res.Manifest.Ref(), res.Manifest.ID()[:12], time.Since(t0).Round(time.Millisecond), res.Stats.NewBytes>>20)
	if s.o.Keep > 0 {
		if _, rerr := s.r.Retain(ctx, s.o.Name, s.o.Keep); rerr != nil {
			s.o.Logf("warning: retention: %v", rerr)
		}
	}
	return err
}

func (s *sup) loop(ctx context.Context, pid int, sigs chan os.Signal) (int, error) {
	var tick <-chan time.Time
	if s.o.Every > 0 {
		t := time.NewTicker(s.o.Every)
		defer t.Stop()
		tick = t.C
	}
	backoff := s.o.Backoff
	exited, err := watchExit(pid)
	if err != nil {
		return 0, err
	}
	for {
		select {
		case <-tick:
			if err := s.checkpoint(ctx, pid, false); err != nil {
				s.o.Logf("warning: periodic checkpoint failed: %v", err)
			}
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				if err := s.checkpoint(ctx, pid, false); err != nil {
					s.o.Logf("warning: checkpoint failed: %v", err)
				}
			default: // SIGTERM, SIGHUP: checkpoint and stop
				if err := s.checkpoint(ctx, pid, true); err != nil {
					s.o.Logf("checkpoint before stopping failed: %v; stopping the program anyway", err)
					unix.Kill(pid, unix.SIGKILL)
				}
				<-exited
				s.job.State, s.job.PID = StateStopped, 0
				s.job.Message = "checkpointed and stopped by " + sig.String()
				s.save()
				return 128 + int(syscall.SIGTERM), nil
			}
		case ws := <-exited:
			switch {
			case ws.Exited():
				code := ws.ExitStatus()
				s.job.State, s.job.PID, s.job.ExitStatus = StateDone, 0, &code
				s.save()
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
				s.o.Logf("program died of %s; restart %d of %d in %v", unix.SignalName(sig), s.job.Restarts, s.o.MaxRestarts, backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return 0, ctx.Err()
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
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
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

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
