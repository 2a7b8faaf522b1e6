package dump

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

const (
	shmDest        = 0o1000  // SHM_DEST: removed (IPC_RMID) while attached
	sysvIDSpace    = 1 << 40 // SharedMem.ID of a System V segment: sysvIDSpace | shmid
	deletedIDSpace = 1 << 41 // SharedMem.ID of an unlinked file mapped shared: deletedIDSpace | n
)

// shmMapping classifies a mapping of a shared memory object: MAP_SHARED
// anonymous memory, a memfd (shared or private), a System V segment, or an
// unlinked file mapped shared. It returns ok false for other mappings, and
// a refusal when the object cannot be restored. Contents are read once per
// object by collectShm.
func shmMapping(pid int, e procfs.MapEntry, m *image.Mapping, ids *idCache) (ok bool, why string) {
	switch {
	case strings.HasPrefix(e.Path, "/SYSV"):
		if e.Offset != 0 {
			return true, "a partial mapping of a System V shared memory segment"
		}
		m.Kind, m.Shm = image.KindShm, sysvIDSpace|e.Inode
	case strings.HasPrefix(e.Path, "/memfd:"),
		e.Shared && (e.Path == "" || e.Path == "/dev/zero (deleted)" || strings.HasPrefix(e.Path, "[anon_shmem:")):
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, e.Start, e.End), &st); err != nil {
			return true, fmt.Sprintf("shared memory whose object cannot be opened (%v)", err)
		}
		m.Kind, m.Shm = image.KindShm, st.Ino
	case e.Shared && e.Deleted() && e.Path != "/ (deleted)":
		// Nothing can open the file again: shared memory between the
		// processes that map it (POSIX semaphores and shm_open objects
		// unlinked at once, as Python's multiprocessing makes them).
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, e.Start, e.End), &st); err != nil {
			return true, fmt.Sprintf("shared mapping of a deleted file that cannot be opened (%v)", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return true, "shared mapping of a deleted device or special file"
		}
		m.Kind, m.Shm = image.KindShm, ids.deletedShm(st.Dev, st.Ino)
	default:
		return false, ""
	}
	return true, ""
}

// deletedShm names the unlinked file dev:ino mapped shared, the same in
// every process of one dump.
func (c *idCache) deletedShm(dev, ino uint64) uint64 {
	key := [2]uint64{dev, ino}
	if id, ok := c.deleted[key]; ok {
		return id
	}
	id := deletedIDSpace | uint64(len(c.deleted)+1)
	c.deleted[key] = id
	return id
}

// shareDeleted turns a descriptor of an unlinked file that the tree also
// maps shared into a descriptor of that shared memory object, so that
// writes through either stay visible through the other after a restore.
func shareDeleted(tree *image.Tree, ids *idCache) {
	for _, p := range tree.Processes {
		for _, fd := range p.FDs {
			if fd.Kind != image.FDDeleted || fd.File == nil {
				continue
			}
			if id, ok := ids.deleted[[2]uint64{fd.File.Dev, fd.File.Ino}]; ok {
				fd.Kind, fd.Shm, fd.Data = image.FDMemfd, id, nil
			}
		}
	}
}

// memfdFD records fd num of pid, a memfd; collectShm reads its contents.
func memfdFD(pid, num int, fd *image.FD) error {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, num), &st); err != nil {
		return err
	}
	fd.Kind, fd.Shm = image.FDMemfd, st.Ino
	return nil
}

// collectShm saves, once per object, the contents and state of every
// shared memory object the tree maps or holds.
func collectShm(tree *image.Tree, opts Options) error {
	for _, p := range tree.Processes {
		for _, m := range p.Mappings {
			if m.Kind != image.KindShm || tree.ShmObj(m.Shm) != nil {
				continue
			}
			s, err := readShm(fmt.Sprintf("/proc/%d/map_files/%x-%x", p.PID, m.Start, m.End), m.Path, m.Shm, opts)
			if err != nil {
				return fmt.Errorf("process %d (%s): mapping %#x-%#x %s: %w", p.PID, p.Comm, m.Start, m.End, m.Path, err)
			}
			tree.Shm = append(tree.Shm, s)
		}
		for _, fd := range p.FDs {
			if fd.Kind != image.FDMemfd || tree.ShmObj(fd.Shm) != nil {
				continue
			}
			s, err := readShm(fmt.Sprintf("/proc/%d/fd/%d", p.PID, fd.Num), fd.Path, fd.Shm, opts)
			if err != nil {
				return fmt.Errorf("process %d (%s): fd %d %s: %w", p.PID, p.Comm, fd.Num, fd.Path, err)
			}
			tree.Shm = append(tree.Shm, s)
		}
	}
	return nil
}

func readShm(path, name string, id uint64, opts Options) (*image.SharedMem, error) {
	s := &image.SharedMem{ID: id}
	switch {
	case id&sysvIDSpace != 0:
		s.Kind = image.ShmSysV
		shmid := int(id &^ sysvIDSpace)
		var d unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(shmid, unix.IPC_STAT, &d); err != nil {
			return nil, fmt.Errorf("segment %d: IPC_STAT: %w", shmid, err)
		}
		s.SysV = &image.SysVShm{ShmID: shmid, Key: d.Perm.Key, Mode: d.Perm.Mode & 0o777, UID: d.Perm.Uid, GID: d.Perm.Gid,
			Removed: d.Perm.Mode&shmDest != 0}
	case strings.HasPrefix(name, "/memfd:"):
		s.Kind = image.ShmMemfd
		s.Name = strings.TrimSuffix(strings.TrimPrefix(name, "/memfd:"), " (deleted)")
	case id&deletedIDSpace != 0:
		s.Kind = image.ShmDeleted
		s.Name = strings.TrimSuffix(name, " (deleted)")
	default:
		s.Kind = image.ShmAnon
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the shared memory object: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	s.Size = st.Size
	if s.Kind == image.ShmMemfd {
		if seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err == nil {
			s.Seals = seals
		}
	}
	// Only what holds data (SEEK_DATA/SEEK_HOLE: pages ever touched).
	total := int64(0)
	for off := int64(0); off < s.Size; {
		start, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA: %w", err)
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE: %w", err)
		}
		end = min(end, s.Size)
		total += end - start
		if total > opts.MaxDeletedFile {
			return nil, fmt.Errorf("%d bytes of shared memory (limit %d): %w", total, opts.MaxDeletedFile, ErrUnsupported)
		}
		b := make([]byte, end-start)
		if _, err := f.ReadAt(b, start); err != nil && err != io.EOF {
			return nil, err
		}
		s.Extents = append(s.Extents, image.Extent{Off: start, Data: b})
		off = end
	}
	return s, nil
}
