package ptrace

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("ptrace: tracer closed")

// Tracer runs functions on one goroutine locked to an OS thread. All ptrace
// requests and waits for the tracees it owns must go through Do.
type Tracer struct {
	reqs chan func()
	done chan struct{}
	once sync.Once
	tid  int
}

// NewTracer starts the tracer goroutine.
func NewTracer() *Tracer {
	t := &Tracer{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan int)
	go t.loop(ready)
	t.tid = <-ready
	return t
}

func (t *Tracer) loop(ready chan int) {
	// The thread stays locked for the life of the tracer and is thrown
	// away with the goroutine, so no other goroutine ever runs on a
	// thread that is a tracer of something; its exit detaches whatever
	// it still traces (a killed tracee's exit is then reported to its
	// real parent). The main thread is never thrown away (Go parks it
	// instead, and its tracees would stay traced zombies that their
	// parents wait for forever): there, hold it locked while a new
	// goroutine, which therefore runs on another thread, becomes the
	// tracer.
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		inner := make(chan int)
		go t.loop(inner)
		ready <- <-inner
		runtime.UnlockOSThread()
		return
	}
	ready <- unix.Gettid()
	for {
		select {
		case f := <-t.reqs:
			f()
		case <-t.done:
			return
		}
	}
}

// Do runs f on the tracer thread and returns its error.
func (t *Tracer) Do(f func() error) error {
	var err error
	ch := make(chan struct{})
	select {
	case t.reqs <- func() { err = f(); close(ch) }:
	case <-t.done:
		return ErrClosed
	}
	<-ch
	return err
}

// Close stops the tracer goroutine; its locked thread exits, which detaches
// anything still traced from it.
func (t *Tracer) Close() { t.once.Do(func() { close(t.done) }) }

// ThreadID is the OS thread id of the tracer thread.
func (t *Tracer) ThreadID() int { return t.tid }

// The methods below must be called from inside Do.

// Options used for every tracee.
const (
	OptsDump    = unix.PTRACE_O_TRACESYSGOOD
	OptsRestore = unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_EXITKILL
)

// Seize attaches to tid without stopping it.
func Seize(tid int, opts int) error {
	return ptrace(unix.PTRACE_SEIZE, tid, 0, uintptr(opts))
}

// Interrupt asks a seized tracee to stop.
func Interrupt(tid int) error { return ptrace(unix.PTRACE_INTERRUPT, tid, 0, 0) }

// SetOptions sets ptrace options.
func SetOptions(tid int, opts int) error {
	return ptrace(unix.PTRACE_SETOPTIONS, tid, 0, uintptr(opts))
}

// Detach detaches from tid, delivering sig (0 for none).
func Detach(tid int, sig int) error { return ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig)) }

// Cont resumes tid with signal sig.
func Cont(tid int, sig int) error { return ptrace(unix.PTRACE_CONT, tid, 0, uintptr(sig)) }

// SyscallStep resumes tid until the next syscall entry or exit.
func SyscallStep(tid int, sig int) error { return ptrace(unix.PTRACE_SYSCALL, tid, 0, uintptr(sig)) }

// GetEventMsg returns PTRACE_GETEVENTMSG.
func GetEventMsg(tid int) (uint64, error) {
	m, err := unix.PtraceGetEventMsg(tid)
	return uint64(m), err
}

// Wait waits for a state change of tid (__WALL), retrying on EINTR.
//
// A process killed while it is traced would make a wait for its leader
// block forever: the leader's exit is reported only once the other
// threads are reaped, and as traced threads they wait for their tracer to
// reap them, which is blocked here. So while the wait lasts, a watchdog
// reaps the exited threads of the process every 50 ms (any thread of the
// tracer's process may reap them).
func Wait(tid int) (unix.WaitStatus, error) {
	done := make(chan struct{})
	watchdog := time.AfterFunc(50*time.Millisecond, func() {
		for {
			reapExitedThreads(tid)
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	ws, err := wait(tid)
	watchdog.Stop()
	close(done)
	return ws, err
}

// reapExitedThreads reaps the exited threads of tid's process other than
// tid (only a killed process has any: a frozen thread does not exit).
func reapExitedThreads(tid int) {
	tasks, err := procfs.Tasks(tid)
	if err != nil {
		return
	}
	for _, t := range tasks {
		// Only a zombie is reaped; a live or stopped thread gives 0.
		if t != tid && procfs.TaskState(tid, t) == 'Z' {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(t, &ws, unix.WALL|unix.WNOHANG, nil)
		}
	}
}

// ErrNoStop is returned by WaitLimit when the tracee reported nothing in
// time.
var ErrNoStop = errors.New("did not stop")

// WaitLimit is Wait for a tracee that may be unable to stop for long: a
// thread in an uninterruptible wait (a hung NFS server, a vfork parent
// waiting for its child) stops only when the wait ends. It polls, backing
// off from 50 µs to 10 ms, and gives up after limit with ErrNoStop.
func WaitLimit(tid int, limit time.Duration) (unix.WaitStatus, error) {
	deadline := time.Now().Add(limit)
	pause := 50 * time.Microsecond
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait4 %d: %w", tid, err)
		}
		if got == tid {
			return ws, nil
		}
		if time.Now().After(deadline) {
			return 0, ErrNoStop
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

func wait(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait4 %d: %w", tid, err)
		}
		return ws, nil
	}
}

// Event returns the PTRACE_EVENT_* of a stop status, or 0.
func Event(ws unix.WaitStatus) int { return int(ws>>16) & 0xff }

// IsSyscallStop reports a SIGTRAP|0x80 stop (TRACESYSGOOD).
func IsSyscallStop(ws unix.WaitStatus) bool {
	return ws.Stopped() && ws.StopSignal() == syscall.SIGTRAP|0x80
}

// Stop describes an unexpected stop.
func Stop(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %v", ws.Signal())
	case ws.Stopped():
		if e := Event(ws); e != 0 {
			return fmt.Sprintf("stopped by %v with ptrace event %d", ws.StopSignal(), e)
		}
		return fmt.Sprintf("stopped by %v", ws.StopSignal())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

// GetRegs reads the general registers (fs_base and gs_base included).
func GetRegs(tid int) (unix.PtraceRegs, error) {
	var r unix.PtraceRegs
	err := unix.PtraceGetRegs(tid, &r)
	return r, err
}

// SetRegs writes the general registers.
func SetRegs(tid int, r *unix.PtraceRegs) error { return unix.PtraceSetRegs(tid, r) }

// StartTraced forks and execs path with PTRACE_TRACEME and waits for the
// exec stop: the child is stopped before any of its code runs, traced by
// the calling thread. Call it inside Do.
func StartTraced(path string, argv []string, files []uintptr) (int, error) {
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   []string{},
		Files: files,
		Sys:   &syscall.SysProcAttr{Ptrace: true},
	})
	if err != nil {
		return 0, fmt.Errorf("starting helper %s: %w", path, err)
	}
	ws, err := Wait(pid)
	if err != nil {
		return 0, err
	}
	if !ws.Stopped() || ws.StopSignal() != syscall.SIGTRAP {
		return 0, fmt.Errorf("helper %d: expected exec stop, got %s", pid, Stop(ws))
	}
	return pid, nil
}
