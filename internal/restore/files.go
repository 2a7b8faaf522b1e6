package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

// openFiles opens, in the restorer, every file the tree needs and checks
// each one's identity. The tracees later take them with pidfd_getfd, so a
// description shared in the tree is shared again.
func (r *restorer) openFiles() error {
	r.files = map[*image.FD]*os.File{}
	r.mapFiles = map[string]*os.File{}
	r.exe = map[int]*os.File{}
	descs := map[int]*os.File{}
	pipeEnds := map[uint64][2]*os.File{}
	if err := r.openSockets(); err != nil {
		return err
	}
	if err := r.openInet(); err != nil {
		return err
	}
	if err := r.openShm(); err != nil {
		return err
	}
	for _, p := range r.tree.Processes {
		if p.Zombie {
			continue
		}
		if strings.HasSuffix(p.ExePath, " (deleted)") {
			// The program was replaced or removed while it ran; its
			// mappings were saved whole, only /proc/PID/exe is lost.
			r.warn("process %d: executable %s no longer exists; /proc/%d/exe will not be set", p.PID, p.ExePath, p.PID)
		} else if p.Exe != nil && p.ExePath != "" {
			f, err := r.mapFile(p.ExePath, p.Exe, false, "executable of process "+fmt.Sprint(p.PID))
			if err != nil {
				return err
			}
			r.exe[p.PID] = f
		}
		for _, m := range p.Mappings {
			if m.Kind != image.KindFile {
				continue
			}
			f, err := r.mapFile(m.Path, m.File, m.Shared && m.Prot&image.ProtWrite != 0,
				fmt.Sprintf("mapping %#x-%#x of process %d", m.Start, m.End, p.PID))
			if err != nil {
				return err
			}
			_ = f
		}
		if _, err := os.Stat(p.Cwd); err != nil {
			return fmt.Errorf("process %d: working directory: %w", p.PID, err)
		}
		for _, fd := range p.FDs {
			// Outside fds are substituted by number (a terminal shared by
			// fds 0-2 must not make fd 1 the restorer's stdin).
			shared := fd.Desc != 0 && fd.Kind != image.FDOutside
			if shared && descs[fd.Desc] != nil {
				r.files[fd] = descs[fd.Desc]
				continue
			}
			f, err := r.openFD(p, fd, pipeEnds)
			if err != nil {
				return fmt.Errorf("process %d fd %d (%s %s): %w", p.PID, fd.Num, fd.Kind, fd.Path, err)
			}
			r.files[fd] = f
			if shared {
				descs[fd.Desc] = f
			}
		}
	}
	return r.takeDescLocks()
}

func sameID(want *image.FileID, st *syscall.Stat_t, path string, checkContent bool) error {
	have := dump.FileIdentity(st)
	if have.Dev != want.Dev || have.Ino != want.Ino {
		return fmt.Errorf("%s was replaced since the dump (device/inode %d/%d, was %d/%d): %w", path, have.Dev, have.Ino, want.Dev, want.Ino, ErrMismatch)
	}
	if checkContent && (have.Size != want.Size || have.MtimeNs != want.MtimeNs) {
		return fmt.Errorf("%s changed since the dump (size %d, was %d; mtime %d, was %d): %w", path, have.Size, want.Size, have.MtimeNs, want.MtimeNs, ErrMismatch)
	}
	return nil
}

func (r *restorer) mapFile(path string, id *image.FileID, write bool, what string) (*os.File, error) {
	key := fmt.Sprintf("%s\x00%v", path, write)
	if f := r.mapFiles[key]; f != nil {
		return f, nil
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	// A file mapped shared and writable is written through the mapping:
	// after the dump it moved on as any file the program writes does (a
	// JVM's hsperfdata, sqlite's -shm), and must only be the same file.
	if err := sameID(id, &st, path, !write); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if write && (st.Size != id.Size || st.Mtim.Nano() != id.MtimeNs) {
		r.warn("%s: %s changed since the dump (it is mapped shared and writable: what was written to it since stays)", what, path)
	}
	if id.BuildID != "" {
		if b := dump.BuildID(path); b != id.BuildID {
			f.Close()
			return nil, fmt.Errorf("%s: %s has ELF build-id %s, the image has %s: %w", what, path, b, id.BuildID, ErrMismatch)
		}
	}
	r.mapFiles[key] = f
	return f, nil
}

const dropFlags = unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC | unix.O_NOCTTY

func (r *restorer) openFD(p *image.Process, fd *image.FD, pipeEnds map[uint64][2]*os.File) (*os.File, error) {
	flags := fd.Flags&^dropFlags | unix.O_CLOEXEC
	switch fd.Kind {
	case image.FDFile:
		f, err := os.OpenFile(fd.Path, flags, 0)
		if err != nil {
			return nil, err
		}
		if fd.File != nil {
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
				f.Close()
				return nil, err
			}
			// A file opened for reading must be unchanged; one opened for
			// writing must be the same file (its size may have moved on).
			readOnly := fd.Flags&unix.O_ACCMODE == unix.O_RDONLY && st.Mode&syscall.S_IFMT == syscall.S_IFREG
			if err := sameID(fd.File, &st, fd.Path, readOnly); err != nil {
				f.Close()
				return nil, err
			}
			if !readOnly && st.Mode&syscall.S_IFMT == syscall.S_IFREG && (st.Size != fd.File.Size) {
				r.warn("process %d fd %d: %s changed size since the dump (%d, was %d)", p.PID, fd.Num, fd.Path, st.Size, fd.File.Size)
			}
		}
		if fd.Flags&unix.O_APPEND == 0 && fd.Flags&unix.O_DIRECTORY == 0 {
			if _, err := f.Seek(fd.Offset, 0); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, nil
	case image.FDDevice:
		return os.OpenFile(fd.Path, flags, 0)
	case image.FDDeleted:
		dir := filepath.Dir(fd.Path)
		tmp, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_RDWR, 0o600)
		if err != nil {
			tmp, err = os.OpenFile(os.TempDir(), unix.O_TMPFILE|os.O_RDWR, 0o600)
			if err != nil {
				return nil, fmt.Errorf("recreating deleted file: %w", err)
			}
		}
		defer tmp.Close()
		if _, err := tmp.Write(fd.Data); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", tmp.Fd()), flags, 0)
		if err != nil {
			return nil, err
		}
		if fd.Flags&unix.O_APPEND == 0 {
			if _, err := f.Seek(fd.Offset, 0); err != nil {
				f.Close()
				return nil, err
			}
		}
		return f, nil
	case image.FDPipe:
		ends, ok := pipeEnds[fd.Pipe]
		if !ok {
			var pfd [2]int
			if err := unix.Pipe2(pfd[:], unix.O_CLOEXEC); err != nil {
				return nil, err
			}
			ends = [2]*os.File{os.NewFile(uintptr(pfd[0]), "pipe-r"), os.NewFile(uintptr(pfd[1]), "pipe-w")}
			pp := r.tree.Pipe(fd.Pipe)
			if pp.Size > 0 {
				if _, err := unix.FcntlInt(ends[1].Fd(), unix.F_SETPIPE_SZ, pp.Size); err != nil {
					r.warn("pipe %d: cannot set capacity %d: %v", pp.ID, pp.Size, err)
				}
			}
			if len(pp.Data) > 0 {
				if _, err := ends[1].Write(pp.Data); err != nil {
					return nil, fmt.Errorf("refilling pipe %d: %w", pp.ID, err)
				}
			}
			pipeEnds[fd.Pipe] = ends
			r.extra = append(r.extra, ends[0], ends[1])
		}
		end := ends[0]
		if fd.Flags&unix.O_ACCMODE == unix.O_WRONLY {
			end = ends[1]
		}
		if err := setFL(end, fd.Flags); err != nil {
			return nil, err
		}
		return end, nil
	case image.FDFifo:
		pp := r.tree.Pipe(fd.Pipe)
		if _, ok := pipeEnds[fd.Pipe]; !ok {
			// Hold the FIFO open read-write so that opening either end
			// does not block, and refill it if it is empty.
			keep, err := os.OpenFile(fd.Path, os.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, err
			}
			r.extra = append(r.extra, keep)
			pipeEnds[fd.Pipe] = [2]*os.File{keep, keep}
			if q, err := unix.IoctlGetInt(int(keep.Fd()), unix.TIOCINQ); err == nil && q == 0 && len(pp.Data) > 0 {
				if pp.Size > 0 {
					_, _ = unix.FcntlInt(keep.Fd(), unix.F_SETPIPE_SZ, pp.Size)
				}
				if _, err := keep.Write(pp.Data); err != nil {
					return nil, fmt.Errorf("refilling FIFO %s: %w", fd.Path, err)
				}
			}
		}
		f, err := os.OpenFile(fd.Path, flags|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		if err := setFL(f, fd.Flags); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	case image.FDEventfd, image.FDTimerfd, image.FDSignalfd, image.FDEpoll, image.FDInotify:
		return r.openAnon(p, fd)
	case image.FDUnix:
		fd, ok := r.sockets[fd.Socket]
		if !ok {
			return nil, fmt.Errorf("socket %d was not created", fd)
		}
		return r.socketFile(fd, flags)
	case image.FDMemfd:
		return r.openMemfd(fd, flags)
	case image.FDInet:
		f := r.inet[fd.Inet]
		if f == nil {
			return nil, fmt.Errorf("inet socket %d was not created", fd.Inet)
		}
		return f, setFL(f, fd.Flags)
	case image.FDOutside:
		var std *os.File
		switch fd.Num {
		case 0:
			std = r.opts.Stdin
			if std == nil {
				std = os.Stdin
			}
		case 1:
			std = r.opts.Stdout
			if std == nil {
				std = os.Stdout
			}
		case 2:
			std = r.opts.Stderr
			if std == nil {
				std = os.Stderr
			}
		}
		if f := r.opts.InheritFDs[fd.Path]; f != nil {
			r.setTTY(f, fd.TTY, p, fd)
			return f, nil
		}
		if fd.TTY != nil && r.opts.NewTTY {
			f, err := r.newTTY(fd.Path)
			if err != nil {
				return nil, err
			}
			r.setTTY(f, fd.TTY, p, fd)
			return f, nil
		}
		if std != nil {
			r.setTTY(std, fd.TTY, p, fd)
			return std, nil
		}
		r.warn("process %d fd %d (%s) led outside the tree and has no substitute: replaced by /dev/null", p.PID, fd.Num, fd.Path)
		mode := fd.Flags & unix.O_ACCMODE
		f, err := os.OpenFile("/dev/null", mode|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		r.extra = append(r.extra, f)
		return f, nil
	}
	return nil, fmt.Errorf("unknown fd kind %q", fd.Kind)
}

// setFL sets the file status flags that fcntl can change.
func setFL(f *os.File, flags int) error {
	const settable = unix.O_APPEND | unix.O_NONBLOCK | unix.O_ASYNC | unix.O_DIRECT | unix.O_NOATIME
	cur, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	want := cur&^settable | flags&settable
	if want != cur {
		_, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, want)
	}
	return err
}

func (r *restorer) closeFiles() {
	seen := map[*os.File]bool{os.Stdin: true, os.Stdout: true, os.Stderr: true,
		r.opts.Stdin: true, r.opts.Stdout: true, r.opts.Stderr: true}
	for _, f := range r.opts.InheritFDs {
		seen[f] = true
	}
	closeOnce := func(f *os.File) {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
	for _, f := range r.files {
		closeOnce(f)
	}
	for _, f := range r.mapFiles {
		closeOnce(f)
	}
	for _, f := range r.exe {
		closeOnce(f)
	}
	for _, f := range r.extra {
		closeOnce(f)
	}
}
