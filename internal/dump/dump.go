// Package dump checkpoints a running Linux x86-64 process tree: it freezes
// every thread with ptrace, reads what /proc shows, injects system calls into
// the stopped threads for what it does not (signal dispositions, alternate
// stacks, tid addresses, interval timers, brk), and hands memory pages to an
// image.PageWriter. The tree stays frozen after Dump returns so the caller
// can commit the image first and then Resume or Kill it.
package dump

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Options control a dump.
type Options struct {
	// LeaveRunning says what Finish does: resume the tree (true) or kill it
	// (false, the default: the image replaces the process).
	LeaveRunning bool
	// MaxDeletedFile bounds the contents saved for an unlinked open file
	// (default 64 MiB); a larger one is refused.
	MaxDeletedFile int64
	// PreCopy, when set, holds a pre-copy of the running tree: pages it
	// stored and that were not written since are not read again but
	// declared unchanged to the page writer (an image.PageWriter that is
	// also a ParentReuser, whose parent image is the pre-copy).
	PreCopy *PreCopy
	// KeepTracking (with a PreCopy: one from StartPreCopy, the PreCopy of
	// the previous dump, or NewTracking) leaves the write trackers armed
	// after the dump and makes the PreCopy describe this image: every
	// process gets a tracker (armed during the freeze if it had none), and
	// its pages are the ones this image holds. Passed as PreCopy of the
	// next dump of the tree, whose page writer's parent is this image, it
	// lets that dump read only the pages written since this freeze. The
	// caller keeps and closes it; after a failed dump or commit it no
	// longer describes a committed image and must be closed.
	KeepTracking bool
	// PIDNamespace dumps a container (internal/container): the root is
	// PID 1 of its own PID namespace and the image records every PID as
	// seen inside that namespace (pidns.go). Pages are still handed to the
	// PageWriter under those inner PIDs.
	PIDNamespace bool
	// FreezeTimeout bounds the wait for a thread in an uninterruptible
	// wait (state D) to stop; past it the dump fails and the tree runs on
	// (default 10 s).
	FreezeTimeout time.Duration
	// Seized, when set, is called once every thread of the tree is in a
	// ptrace stop, before anything is read, with the tree's PIDs (as the
	// dumper sees them). An error ends the dump (the tree is released).
	// A container dump checks there that its cgroup holds nothing else
	// and thaws the cgroup, so that injected system calls can run.
	Seized func(pids []int) error
}

// ErrNotFound is wrapped when the PID does not exist.
var ErrNotFound = errors.New("no such process")

// ErrUnsupported is wrapped by refusals: a resource the restorer cannot
// rebuild faithfully (a socket, shared memory, ...). The message names the
// process, the fd or mapping, and its kind.
var ErrUnsupported = errors.New("not supported")

// Handle is a dumped tree that is still frozen (every thread in a ptrace
// stop). Exactly one of Resume or Kill (or Finish) must be called.
type Handle struct {
	Tree *image.Tree
	opts Options

	mu    sync.Mutex
	tr    *ptrace.Tracer
	procs []*proc
	done  bool

	frozenAt time.Time
	frozen   time.Duration

	repair []*os.File // TCP connections in repair mode (inet.go)
}

type thread struct {
	tid     int
	regs    unix.PtraceRegs // registers at freeze, put back on resume
	mask    uint64          // signal mask at freeze
	stashed []int           // signals taken out of the way while freezing
}

type proc struct {
	pid     int
	zombie  bool
	stopped bool // in a job-control stop when frozen
	threads []*thread
}

var (
	regMu    sync.Mutex
	registry = map[*image.Tree]*Handle{}
)

// Dump freezes the tree rooted at pid, saves it and returns its image. The
// tree is left frozen: call Resume(tree), Kill(tree) or Finish(tree) once the
// image is committed. On error nothing is left stopped or traced.
func Dump(ctx context.Context, pid int, opts Options, pw image.PageWriter) (*image.Tree, error) {
	h, err := Checkpoint(ctx, pid, opts, pw)
	if err != nil {
		return nil, err
	}
	regMu.Lock()
	registry[h.Tree] = h
	regMu.Unlock()
	return h.Tree, nil
}

func lookup(t *image.Tree) (*Handle, error) {
	regMu.Lock()
	defer regMu.Unlock()
	h := registry[t]
	if h == nil {
		return nil, errors.New("dump: tree is not frozen by this process (already resumed or killed?)")
	}
	delete(registry, t)
	return h, nil
}

// Resume lets a tree frozen by Dump run on.
func Resume(t *image.Tree) error {
	h, err := lookup(t)
	if err != nil {
		return err
	}
	return h.Resume()
}

// Kill kills a tree frozen by Dump.
func Kill(t *image.Tree) error {
	h, err := lookup(t)
	if err != nil {
		return err
	}
	return h.Kill()
}

// Finish resumes or kills a tree frozen by Dump, as Options.LeaveRunning says.
func Finish(t *image.Tree) error {
	h, err := lookup(t)
	if err != nil {
		return err
	}
	return h.Finish()
}

// Checkpoint is Dump returning the Handle instead of registering it.
func Checkpoint(ctx context.Context, pid int, opts Options, pw image.PageWriter) (*Handle, error) {
	if opts.MaxDeletedFile == 0 {
		opts.MaxDeletedFile = 64 << 20
	}
	if opts.KeepTracking && opts.PreCopy == nil {
		return nil, errors.New("dump: KeepTracking needs a PreCopy (NewTracking for a first dump)")
	}
	if err := checkTarget(pid, opts.PIDNamespace); err != nil {
		return nil, err
	}
	h := &Handle{opts: opts, tr: ptrace.NewTracer(), frozenAt: time.Now()}
	if err := h.freezeTree(ctx, pid); err != nil {
		h.release(false)
		return nil, err
	}
	var inner map[int]int
	if err := h.afterSeize(&inner, &pw); err != nil {
		h.release(false)
		return nil, err
	}
	tree, err := h.collectIn(ctx, pid, pw)
	if err == nil && inner != nil {
		err = translatePIDs(tree, inner)
	}
	if err == nil {
		// A process that died while we read it gave an image of nothing.
		for _, p := range h.procs {
			if !p.zombie && gone(p.pid) {
				err = fmt.Errorf("process %d exited during dump", p.pid)
				break
			}
		}
	}
	if err != nil {
		h.release(false)
		return nil, err
	}
	if opts.KeepTracking {
		opts.PreCopy.keepOnly(h.procs)
		// A container's images name processes by their PIDs inside it:
		// the next tracked pre-copy writes under those too.
		opts.PreCopy.inner = inner
	}
	h.Tree = tree
	return h, nil
}

// Frozen is how long the tree was stopped, from the start of the freeze to
// the resume (or kill); zero before that.
func (h *Handle) Frozen() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.frozen
}

// Finish resumes or kills the tree as Options.LeaveRunning says.
func (h *Handle) Finish() error {
	if h.opts.LeaveRunning {
		return h.Resume()
	}
	return h.Kill()
}

// Resume puts back every thread's registers and signal mask, re-sends
// signals set aside while freezing, and detaches.
func (h *Handle) Resume() error { return h.release(false) }

// Kill sends SIGKILL to every process of the tree and detaches. The
// processes' parents still have to reap them.
func (h *Handle) Kill() error { return h.release(true) }

func (h *Handle) release(kill bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return errors.New("dump: tree already released")
	}
	h.done = true
	var errs []error
	if !kill {
		// Out of repair mode before any thread runs again (a send in
		// repair mode fails with EINVAL).
		if err := h.releaseRepair(true); err != nil {
			errs = append(errs, err)
		}
	}
	err := h.tr.Do(func() error {
		for _, p := range h.procs {
			if p.zombie {
				continue
			}
			if kill {
				_ = unix.Kill(p.pid, unix.SIGKILL)
				continue
			}
			for _, t := range p.threads {
				if err := ptrace.SetRegs(t.tid, &t.regs); err != nil {
					errs = append(errs, fmt.Errorf("thread %d: restoring registers: %w", t.tid, err))
				}
				if err := ptrace.SetSigmask(t.tid, t.mask); err != nil {
					errs = append(errs, fmt.Errorf("thread %d: restoring signal mask: %w", t.tid, err))
				}
				if err := ptrace.Detach(t.tid, 0); err != nil && err != unix.ESRCH {
					errs = append(errs, fmt.Errorf("thread %d: detaching: %w", t.tid, err))
				}
				for _, s := range t.stashed {
					_ = unix.Tgkill(p.pid, t.tid, unix.Signal(s))
				}
			}
		}
		// Killed processes are not waited for: the tracer thread's exit
		// (h.tr.Close below) detaches them, and the kernel tells their
		// real parents of the deaths. Waiting here for the ptrace exit
		// notifications cost the time the kernel takes to free their
		// memory (70-100 ms a GiB) after the checkpoint was committed;
		// CRIU does not wait either.
		return nil
	})
	h.tr.Close()
	if err := h.releaseRepair(false); err != nil {
		errs = append(errs, err)
	}
	if !h.frozenAt.IsZero() {
		h.frozen = time.Since(h.frozenAt)
	}
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
