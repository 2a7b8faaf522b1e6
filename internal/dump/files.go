package dump

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

var devices = map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/urandom": true, "/dev/random": true, "/dev/full": true}

func isTTY(path string) bool {
	return strings.HasPrefix(path, "/dev/pts/") || strings.HasPrefix(path, "/dev/tty") || path == "/dev/console"
}

// dumpFDs reads every open file descriptor of pid.
func (h *Handle) dumpFDs(pid int, comm string, ids *idCache, opts Options, tree *image.Tree) ([]*image.FD, error) {
	dir := procfs.Path(pid, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("process %d: listing fds: %w", pid, err)
	}
	var out []*image.FD
	for _, e := range ents {
		num, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		refuse := func(kind string) error {
			return fmt.Errorf("process %d (%s): fd %d is %s: %w", pid, comm, num, kind, ErrUnsupported)
		}
		link, err := os.Readlink(fmt.Sprintf("%s/%d", dir, num))
		if err != nil {
			return nil, fmt.Errorf("process %d: fd %d: %w", pid, num, err)
		}
		ib, err := procfs.Read(pid, fmt.Sprintf("fdinfo/%d", num))
		if err != nil {
			return nil, fmt.Errorf("process %d: fd %d: %w", pid, num, err)
		}
		info, err := procfs.ParseFdinfo(ib)
		if err != nil {
			return nil, fmt.Errorf("process %d: fd %d: %w", pid, num, err)
		}
		fd := &image.FD{Num: num, Path: link, Flags: int(info.Flags &^ unix.O_CLOEXEC), CloExec: info.Flags&unix.O_CLOEXEC != 0, Offset: info.Pos}
		switch {
		case strings.HasPrefix(link, "socket:"):
			ino, _ := strconv.ParseUint(strings.Trim(strings.TrimPrefix(link, "socket:"), "[]"), 10, 64)
			why, err := h.dumpSocket(pid, num, ino, fd, tree)
			if err != nil {
				return nil, fmt.Errorf("process %d (%s): fd %d (%s): %w", pid, comm, num, link, err)
			}
			if why != "" {
				if num <= 2 {
					fd.Kind = image.FDOutside // stdio socket: replaced at restore
					break
				}
				return nil, refuse(why)
			}
		case strings.HasPrefix(link, "anon_inode:"):
			kind := strings.Trim(strings.TrimPrefix(link, "anon_inode:"), "[]")
			why, err := anonFD(pid, num, kind, info, fd, func(w string) { tree.Warnings = append(tree.Warnings, w) })
			if err != nil {
				return nil, fmt.Errorf("process %d (%s): fd %d (%s): %w", pid, comm, num, link, err)
			}
			if why != "" {
				return nil, refuse(kind + " (" + link + ")")
			}
		case strings.HasPrefix(link, "pipe:["):
			fd.Kind = image.FDPipe
			fd.Pipe = info.Ino
		case strings.HasPrefix(link, "/memfd:"):
			if err := memfdFD(pid, num, fd); err != nil {
				return nil, fmt.Errorf("process %d (%s): fd %d (%s): %w", pid, comm, num, link, err)
			}
		default:
			if !strings.HasPrefix(link, "/") {
				return nil, refuse("an unsupported file " + link)
			}
			fi, err := os.Stat(fmt.Sprintf("%s/%d", dir, num))
			if err != nil {
				return nil, fmt.Errorf("process %d: fd %d: %w", pid, num, err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			switch st.Mode & syscall.S_IFMT {
			case syscall.S_IFREG:
				if strings.HasSuffix(link, " (deleted)") {
					if st.Size > opts.MaxDeletedFile {
						return nil, refuse(fmt.Sprintf("a deleted file of %d bytes (limit %d) %s", st.Size, opts.MaxDeletedFile, link))
					}
					fd.Kind = image.FDDeleted
					data, err := readFD(pid, num, st.Size)
					if err != nil {
						return nil, fmt.Errorf("process %d: fd %d: saving deleted file: %w", pid, num, err)
					}
					fd.Data = data
					fd.File = FileIdentity(st)
					break
				}
				fd.Kind = image.FDFile
				if fd.File, err = ids.get(fmt.Sprintf("%s/%d", dir, num)); err != nil {
					return nil, err
				}
			case syscall.S_IFDIR:
				fd.Kind = image.FDFile
				fd.File = FileIdentity(st)
			case syscall.S_IFIFO:
				fd.Kind = image.FDFifo
				fd.Pipe = st.Ino
				fd.File = FileIdentity(st)
				if tree.Pipe(st.Ino) == nil {
					tree.Pipes = append(tree.Pipes, &image.Pipe{ID: st.Ino, Fifo: link})
				}
			case syscall.S_IFCHR:
				switch {
				case devices[link]:
					fd.Kind = image.FDDevice
				case isTTY(link):
					fd.Kind = image.FDOutside
					fd.TTY = ttyState(pid, num)
				default:
					return nil, refuse("a character device " + link)
				}
			default:
				return nil, refuse("an unsupported file type " + link)
			}
		}
		locks, why, err := parseLocks(info.Extra["lock"])
		if err != nil {
			return nil, fmt.Errorf("process %d (%s): fd %d (%s): %w", pid, comm, num, link, err)
		}
		if why != "" {
			return nil, refuse(why + " " + link)
		}
		fd.Locks = locks
		out = append(out, fd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Num < out[j].Num })
	return out, nil
}

// targetFD duplicates fd num of pid into this process (same open file
// description).
func targetFD(pid, num int) (*os.File, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	fd, err := unix.PidfdGetfd(pfd, num, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("fd %d of %d", num, pid)), nil
}

func readFD(pid, num int, size int64) ([]byte, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd/%d", pid, num))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, size))
}

// otherSideClosed reports whether nobody holds the other side of the pipe
// of which fd num of pid is one end: no writer for a read end (POLLHUP, as
// when a pipeline's writer exited before its reader read everything), no
// reader for a write end (POLLERR). Such a pipe is wholly the tree's: it
// is saved with its data, and the restorer closes the missing side.
func otherSideClosed(pid, num int, write bool) bool {
	f, err := targetFD(pid, num) // the same open file: a new one would not see HUP
	if err != nil {
		return false
	}
	defer f.Close()
	pfd := []unix.PollFd{{Fd: int32(f.Fd())}}
	if _, err := unix.Poll(pfd, 0); err != nil {
		return false
	}
	if write {
		return pfd[0].Revents&unix.POLLERR != 0
	}
	return pfd[0].Revents&unix.POLLHUP != 0
}

// peekPipe returns the data queued in the pipe that fd num of pid refers to,
// without consuming it (tee into a private pipe), and the pipe's capacity.
func peekPipe(pid, num int) ([]byte, int, error) {
	f, err := targetFD(pid, num)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	size, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return nil, 0, err
	}
	queued, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ)
	if err != nil {
		return nil, 0, err
	}
	if queued == 0 {
		return nil, size, nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, 0, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
		return nil, 0, fmt.Errorf("sizing a pipe to %d bytes: %w", size, err)
	}
	// tee needs the source to be the read side; the duplicated fd may be
	// the write end, so open the pipe for reading through /proc.
	r, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", pid, num), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	n, err := unix.Tee(int(r.Fd()), p[1], queued, unix.SPLICE_F_NONBLOCK)
	if err != nil {
		return nil, 0, fmt.Errorf("tee: %w", err)
	}
	data := make([]byte, n)
	for got := 0; got < len(data); {
		m, err := unix.Read(p[0], data[got:])
		if err != nil {
			return nil, 0, err
		}
		if m == 0 {
			return nil, 0, io.ErrUnexpectedEOF
		}
		got += m
	}
	return data, size, nil
}

func kcmpFile(pid1, pid2, fd1, fd2 int) bool {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), 0 /* KCMP_FILE */, uintptr(fd1), uintptr(fd2), 0)
	return e == 0 && r == 0
}

// linkFiles decides which pipes lie inside the tree, saves their queued data,
// and groups descriptors that share an open file description.
func linkFiles(tree *image.Tree, opts Options) error {
	if err := collectShm(tree, opts); err != nil {
		return err
	}
	type end struct {
		p  *image.Process
		fd *image.FD
	}
	byPipe := map[uint64][]end{}
	var order []uint64
	for _, p := range tree.Processes {
		for _, fd := range p.FDs {
			if fd.Kind == image.FDPipe || fd.Kind == image.FDFifo {
				if byPipe[fd.Pipe] == nil {
					order = append(order, fd.Pipe)
				}
				byPipe[fd.Pipe] = append(byPipe[fd.Pipe], end{p, fd})
			}
		}
	}
	for _, id := range order {
		ends := byPipe[id]
		r, w := false, false
		for _, e := range ends {
			switch e.fd.Flags & unix.O_ACCMODE {
			case unix.O_RDONLY:
				r = true
			case unix.O_WRONLY:
				w = true
			default:
				r, w = true, true
			}
		}
		first := ends[0]
		if first.fd.Kind == image.FDPipe && !(r && w) && !otherSideClosed(first.p.PID, first.fd.Num, w) {
			// Only one side is ours: the pipe leads outside the tree.
			for _, e := range ends {
				e.fd.Kind = image.FDOutside
				e.fd.Pipe = 0
			}
			continue
		}
		data, size, err := peekPipe(first.p.PID, first.fd.Num)
		if err != nil {
			return fmt.Errorf("process %d fd %d: reading queued data of %s: %w", first.p.PID, first.fd.Num, first.fd.Path, err)
		}
		pp := tree.Pipe(id)
		if pp == nil {
			pp = &image.Pipe{ID: id}
			tree.Pipes = append(tree.Pipes, pp)
		}
		pp.Size, pp.Data = size, data
	}
	if err := linkSockets(tree); err != nil {
		return err
	}
	// Shared open file descriptions (inherited across fork, dup).
	var all []end
	for _, p := range tree.Processes {
		for _, fd := range p.FDs {
			all = append(all, end{p, fd})
		}
	}
	next := 1
	for i, a := range all {
		if a.fd.Desc != 0 {
			continue
		}
		for _, b := range all[i+1:] {
			if b.fd.Desc != 0 || a.fd.Kind != b.fd.Kind || a.fd.Path != b.fd.Path {
				continue
			}
			if kcmpFile(a.p.PID, b.p.PID, a.fd.Num, b.fd.Num) {
				if a.fd.Desc == 0 {
					a.fd.Desc = next
					next++
				}
				b.fd.Desc = a.fd.Desc
			}
		}
	}
	return resolveEpoll(tree)
}

// resolveEpoll keeps, for each epoll description, the interest list of one
// process in which every target is open under its registered number; the
// restorer re-adds the targets there. A target no process holds under that
// number (closed, or renumbered with dup2 after EPOLL_CTL_ADD) cannot be
// re-added.
func resolveEpoll(tree *image.Tree) error {
	done := map[int]bool{}
	for _, p := range tree.Processes {
		for _, fd := range p.FDs {
			if fd.Kind != image.FDEpoll || len(fd.Epoll) == 0 || fd.Desc != 0 && done[fd.Desc] {
				continue
			}
			holders := []*image.FD{fd}
			if fd.Desc != 0 {
				done[fd.Desc] = true
				for _, q := range tree.Processes {
					for _, g := range q.FDs {
						if g != fd && g.Desc == fd.Desc {
							holders = append(holders, g)
						}
					}
				}
			}
			chosen := -1
			for i, h := range holders {
				ok := true
				for _, t := range h.Epoll {
					ok = ok && t.FD >= 0
				}
				if ok && chosen < 0 {
					chosen = i
				}
			}
			if chosen < 0 {
				for _, t := range fd.Epoll {
					if t.FD < 0 {
						return fmt.Errorf("process %d (%s): fd %d is an epoll whose target fd %d is no longer open under that number: %w",
							p.PID, p.Comm, fd.Num, -1-t.FD, ErrUnsupported)
					}
				}
			}
			for i, h := range holders {
				if i != chosen {
					h.Epoll = nil
				}
			}
		}
	}
	return nil
}
