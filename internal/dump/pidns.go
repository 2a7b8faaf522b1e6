package dump

import (
	"context"
	"fmt"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/nsenter"
	"golang.org/x/sys/unix"
)

// A container's processes are dumped like any tree (ptrace, /proc, injected
// system calls, all with the PIDs the dumper sees), and the image is then
// rewritten to the PIDs seen inside the container's PID namespace, which
// are the ones a restore recreates there.

// checkContainerRoot accepts only PID 1 of a PID namespace below ours.
func checkContainerRoot(pid int) error {
	ids, err := nsenter.PIDs(pid, pid)
	if err != nil {
		return err
	}
	if len(ids) < 2 || ids[len(ids)-1] != 1 {
		return fmt.Errorf("process %d is not PID 1 of its own PID namespace (NSpid %v): %w", pid, ids, ErrUnsupported)
	}
	return nil
}

// afterSeize runs Options.Seized and, for a container, maps every task to
// its PID inside the namespace and makes pw receive pages under those.
func (h *Handle) afterSeize(inner *map[int]int, pw *image.PageWriter) error {
	if h.opts.Seized != nil {
		pids := make([]int, len(h.procs))
		for i, p := range h.procs {
			pids[i] = p.pid
		}
		if err := h.opts.Seized(pids); err != nil {
			return err
		}
	}
	if !h.opts.PIDNamespace {
		return nil
	}
	m, err := h.innerPIDs()
	if err != nil {
		return err
	}
	*inner = m
	*pw = wrapInner(*pw, m)
	return nil
}

// innerPIDs maps every seized task to its id inside the root's PID
// namespace.
func (h *Handle) innerPIDs() (map[int]int, error) {
	m := map[int]int{}
	depth := 0
	for _, p := range h.procs {
		tids := []int{p.pid}
		for _, t := range p.threads {
			if t.tid != p.pid {
				tids = append(tids, t.tid)
			}
		}
		for _, tid := range tids {
			ids, err := nsenter.PIDs(p.pid, tid)
			if err != nil {
				return nil, err
			}
			if depth == 0 {
				depth = len(ids)
			}
			if len(ids) != depth {
				return nil, fmt.Errorf("task %d is in another PID namespace than the container's root (NSpid %v): %w", tid, ids, ErrUnsupported)
			}
			m[tid] = ids[len(ids)-1]
		}
	}
	return m, nil
}

// StartContainerPreCopy is StartPreCopy for a container whose PID 1 is pid
// (Options.PIDNamespace): Copy and CopyRound hand pages to their writer
// under the PIDs inside the container, as the frozen dump does.
func StartContainerPreCopy(ctx context.Context, pid int) (*PreCopy, error) {
	return startPreCopy(ctx, pid, true)
}

// wrapInner makes pw receive pages under the PIDs of m (nil: pw itself),
// keeping it a ParentReuser when it is one.
func wrapInner(pw image.PageWriter, m map[int]int) image.PageWriter {
	if m == nil {
		return pw
	}
	if r, ok := pw.(ParentReuser); ok {
		return innerReuser{innerPageWriter{pw: pw, m: m}, r}
	}
	return innerPageWriter{pw: pw, m: m}
}

type innerPageWriter struct {
	pw image.PageWriter
	m  map[int]int
}

func (w innerPageWriter) WritePages(pid int, addr uint64, b []byte) error {
	return w.pw.WritePages(w.m[pid], addr, b)
}

type innerReuser struct {
	innerPageWriter
	r ParentReuser
}

func (w innerReuser) ReusePages(pid int, addr, n uint64) error {
	return w.r.ReusePages(w.m[pid], addr, n)
}

// translatePIDs rewrites tree from the dumper's PIDs to the namespace's.
// The root's parent is outside the namespace: its PPID becomes 0.
func translatePIDs(t *image.Tree, m map[int]int) error {
	in := func(id int, what string) (int, error) {
		if v, ok := m[id]; ok {
			return v, nil
		}
		return 0, fmt.Errorf("%s %d is outside the container: %w", what, id, ErrUnsupported)
	}
	var err error
	if t.Root, err = in(t.Root, "root"); err != nil {
		return err
	}
	for i, p := range t.Processes {
		host := p.PID
		if p.PID, err = in(p.PID, "process"); err != nil {
			return err
		}
		if i == 0 {
			p.PPID = 0
		} else if p.PPID, err = in(p.PPID, fmt.Sprintf("process %d: parent", host)); err != nil {
			return err
		}
		if p.PGID, err = in(p.PGID, fmt.Sprintf("process %d: process group", host)); err != nil {
			return err
		}
		if p.SID, err = in(p.SID, fmt.Sprintf("process %d: session", host)); err != nil {
			return err
		}
		for j, c := range p.Children {
			if p.Children[j], err = in(c, "child"); err != nil {
				return err
			}
		}
		for _, th := range p.Threads {
			if th.TID, err = in(th.TID, "thread"); err != nil {
				return err
			}
		}
	}
	return nil
}

// collectIn is collect, for a container from a thread inside its network
// and IPC namespaces: socket diagnostics (sock_diag) only see the sockets
// of the namespace they are asked in, and System V IPC ids are looked up
// in the caller's IPC namespace.
func (h *Handle) collectIn(ctx context.Context, pid int, pw image.PageWriter) (*image.Tree, error) {
	if !h.opts.PIDNamespace {
		return h.collect(ctx, pid, pw)
	}
	var tree *image.Tree
	err := nsenter.RunPIDMany(pid, map[string]int{"net": unix.CLONE_NEWNET, "ipc": unix.CLONE_NEWIPC}, func() error {
		var err error
		tree, err = h.collect(ctx, pid, pw)
		return err
	})
	return tree, err
}
