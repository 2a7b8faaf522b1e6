// Package restore rebuilds a process tree from an image.Tree and its pages.
//
// Everything runs on one OS thread (a ptrace.Tracer): a helper program is
// started traced and stopped at exec, stripped to a scratch page and the
// kernel's vdso mappings, and then cloned with clone3(set_tid) into every
// process of the tree at its original PID. Each process is then rebuilt by
// system calls injected into it (mremap of vvar/vdso, mmap, prctl
// PR_SET_MM_MAP, pidfd_getfd/dup3 for files, rt_sigaction, clone3 for
// threads, rseq, ...), its memory is written through /proc/PID/mem, and its
// threads get their registers, XSAVE state and signal masks back before
// being detached. See docs/PROCESS.md for the order and the reasons.
package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Options control a restore.
type Options struct {
	// Detach makes the restored root a child of init (or the nearest
	// subreaper) instead of the restoring process.
	Detach bool
	// Stdin, Stdout and Stderr replace fds 0, 1 and 2 of any restored
	// process whose stdio led outside the tree (a terminal, a pipe to a
	// shell). Nil means the restorer's own os.Stdin, os.Stdout, os.Stderr.
	Stdin, Stdout, Stderr *os.File
	// InheritFDs gives files for other fds that led outside the tree, keyed
	// by the fd's recorded path (image.FD.Path, e.g. "pipe:[12345]" or
	// "/dev/pts/3"). An outside fd with no entry gets /dev/null and a
	// warning.
	InheritFDs map[string]*os.File
	// Helper is the program started (and stopped at exec, never run) to
	// become the tree. Default: this executable (/proc/self/exe).
	Helper string
	// PIDWait bounds the wait for a PID still held by a zombie (default 5 s).
	PIDWait time.Duration
	// KillLeftovers kills what still runs of the dumped processes themselves
	// (the same process: same boot, same start time) before restoring, as
	// a supervisor does after a crash: a child that left the program's
	// process group (setsid) outlives the root and holds its PID.
	KillLeftovers bool
	// NewTTY puts fds that were on a terminal (and have no InheritFDs
	// entry) on a new pseudo-terminal, one per terminal of the image, with
	// the saved settings and window size; Result.TTY is its master. Without
	// it they get the substitute stdio, which, when it is a terminal, is
	// given the saved settings and window size.
	NewTTY bool
	// Cgroup is the cgroup v2 directory a container image is restored
	// into (the helper is moved there before it clones the container's
	// PID 1). Empty: the restorer's own cgroup.
	Cgroup string
	// Prestage, when set, holds a helper into which the root's memory was
	// written while it arrived (live migration): the restore uses it when
	// the image fits (one process, the same PID), and kills it otherwise.
	Prestage *Prestage
}

// Result describes a restored tree.
type Result struct {
	Root     int   // PID of the root process
	PIDs     []int // every restored process
	Warnings []string
	// TTY is the master of the new pseudo-terminal (Options.NewTTY), nil
	// when the image had no terminal; ExtraTTYs are those of further
	// terminals. The caller owns and closes them.
	TTY       *os.File
	ExtraTTYs []*os.File
	child     bool
}

// ErrPIDInUse is wrapped when a PID of the image belongs to a live process.
var ErrPIDInUse = errors.New("PID in use")

// ErrMismatch is wrapped when the machine or a file no longer matches the
// image (a changed file, other CPU features, another vdso).
var ErrMismatch = errors.New("image does not fit this machine")

// Wait waits for the root to exit and returns its wait status. It is only
// possible when the root is the restorer's child (Options.Detach false).
func (r *Result) Wait() (unix.WaitStatus, error) {
	if !r.child {
		return 0, errors.New("restore: the root was detached; it is not our child")
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(r.Root, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		return ws, err
	}
}

// Signal sends sig to the restored root (for forwarding signals).
func (r *Result) Signal(sig syscall.Signal) error { return unix.Kill(r.Root, sig) }

// Restore rebuilds the tree with its original PIDs and lets it run. With
// Options.Detach false the root is a child of the calling process: wait for
// it with Result.Wait (or unix.Wait4) and forward signals with Result.Signal.
func Restore(ctx context.Context, tree *image.Tree, pr image.PageReader, opts Options) (*Result, error) {
	// A prestaged helper the restore does not take over is killed.
	defer opts.Prestage.Close()
	if err := tree.Validate(); err != nil {
		return nil, err
	}
	if opts.PIDWait == 0 {
		opts.PIDWait = 5 * time.Second
	}
	if opts.Helper == "" {
		// This executable; through /proc so an upgraded or deleted
		// binary still works. It never runs: it is stopped at exec.
		opts.Helper = "/proc/self/exe"
	}
	if err := checkCPU(tree); err != nil {
		return nil, err
	}
	// A container's PIDs are recreated in a PID namespace of its own: the
	// host's PIDs do not matter.
	if tree.Container == nil {
		if opts.KillLeftovers {
			killLeftovers(tree)
		}
		if err := waitPIDsFree(ctx, tree, opts.PIDWait); err != nil {
			return nil, err
		}
	}
	r := &restorer{tree: tree, pr: pr, opts: opts, res: &Result{Root: tree.Root, child: !opts.Detach}, epollDone: map[int]bool{}}
	defer r.closeFiles()
	if err := r.openFilesIn(); err != nil {
		r.finishShmIn(true)
		r.dropTTYs()
		return nil, err
	}
	var tr *ptrace.Tracer
	if opts.Prestage != nil {
		t, h, err := opts.Prestage.adopt(tree)
		if err != nil {
			opts.Prestage.Close()
			r.warn("memory staged during the transfer not used: %v", err)
		} else {
			tr, r.pre, r.preHelper = t, opts.Prestage, h
		}
	}
	if tr == nil {
		tr = ptrace.NewTracer()
	}
	defer tr.Close()
	if err := tr.Do(func() error { return r.run(ctx) }); err != nil {
		_ = tr.Do(func() error { r.abort(); return nil })
		r.finishShmIn(true)
		r.dropTTYs()
		return nil, err
	}
	r.finishShmIn(false)
	return r.res, nil
}

func checkCPU(tree *image.Tree) error {
	have, err := ptrace.XFeatures()
	if err != nil {
		return fmt.Errorf("reading this machine's XSAVE features: %w", err)
	}
	if tree.CPU.XFeatures&^have != 0 {
		return fmt.Errorf("the image needs XSAVE features %#x, this CPU has %#x (missing %#x): %w",
			tree.CPU.XFeatures, have, tree.CPU.XFeatures&^have, ErrMismatch)
	}
	return nil
}

// waitPIDsFree checks every PID and TID of the image: one held by a zombie is
// waited for (bounded), one held by a live task is an error. A PID also
// stays taken while it is the process group or session of any task (a
// killed tree's group leader, reaped, whose killed children are zombies
// not yet reaped by init): that too is waited for while those tasks are
// dying, and an error when one of them lives.
func waitPIDsFree(ctx context.Context, tree *image.Tree, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var groups map[int]procfs.Stat // PGIDs and SIDs in use, read again every 100 ms while waiting
	var scanned time.Time
	want := map[int]bool{}
	for _, p := range tree.Processes {
		want[p.PID] = true
	}
	for _, p := range tree.Processes {
		ids := []int{p.PID}
		for _, t := range p.Threads {
			if t.TID != p.PID {
				ids = append(ids, t.TID)
			}
		}
		for _, id := range ids {
			for {
				b, err := procfs.Read(id, "stat")
				if err == nil {
					st, perr := procfs.ParseStat(b)
					if perr == nil && !dead(st) {
						return fmt.Errorf("PID %d is used by process %d (%s): %w", id, st.PID, st.Comm, ErrPIDInUse)
					}
				} else {
					if groups == nil || time.Since(scanned) > 100*time.Millisecond {
						groups, scanned = groupsInUse(want), time.Now()
					}
					st, held := groups[id]
					if !held {
						break
					}
					if !dead(st) {
						return fmt.Errorf("PID %d is the process group or session of process %d (%s): %w", id, st.PID, st.Comm, ErrPIDInUse)
					}
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("PID %d is still held by an unreaped zombie: %w", id, ErrPIDInUse)
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	return nil
}

// killLeftovers SIGKILLs each process of the image that still runs: the
// same PID, boot and start time, so never a process that reused the PID.
func killLeftovers(tree *image.Tree) {
	if tree.BootID == "" || tree.BootID != procfs.BootID() {
		return
	}
	for _, p := range tree.Processes {
		b, err := procfs.Read(p.PID, "stat")
		if err != nil || p.StartTime == 0 {
			continue
		}
		if st, err := procfs.ParseStat(b); err == nil && st.PID == p.PID && st.StartTime == p.StartTime {
			_ = unix.Kill(p.PID, unix.SIGKILL)
		}
	}
}

// groupsInUse maps each process group and session ID among want to one
// process in it (a live one if there is any).
func groupsInUse(want map[int]bool) map[int]procfs.Stat {
	out := map[int]procfs.Stat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st, err := procfs.ParseStat(b)
		if err != nil {
			continue
		}
		for _, g := range []int{st.PGID, st.SID} {
			if !want[g] {
				continue
			}
			if old, ok := out[g]; !ok || dead(old) {
				out[g] = st
			}
		}
	}
	return out
}

const pfExiting = 0x4 // PF_EXITING in /proc/PID/stat's flags

// dead reports a task whose PID is free once it is reaped: a zombie, an
// exiting task, or one killed whose SIGKILL is still pending (a tree killed
// just before the restore has not run to its exit yet).
func dead(st procfs.Stat) bool {
	if st.State == 'Z' || st.State == 'X' || st.Flags&pfExiting != 0 {
		return true
	}
	b, err := procfs.Read(st.PID, "status")
	if err != nil {
		return true // gone since
	}
	s, err := procfs.ParseStatus(b)
	const sigkill = 1 << (unix.SIGKILL - 1)
	return err == nil && (s.SigPnd|s.ShdPnd)&sigkill != 0
}

func hashBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (r *restorer) warn(format string, a ...any) {
	r.res.Warnings = append(r.res.Warnings, fmt.Sprintf(format, a...))
}
