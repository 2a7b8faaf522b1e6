package restore

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/ptrace"
	"github.com/ckpt/ckpt/internal/sysvipc"
	"golang.org/x/sys/unix"
)

const (
	shmRdonly = 0o10000  // SHM_RDONLY
	shmExec   = 0o100000 // SHM_EXEC
	fSealSeal = 1        // F_SEAL_SEAL: a memfd made without MFD_ALLOW_SEALING
)

// openShm creates, in the restorer, every shared memory object of the tree
// with its contents: MAP_SHARED anonymous memory as a shared anonymous
// mapping of the restorer's (its file taken from /proc/self/map_files, so
// the processes' mappings are again "/dev/zero (deleted)"), memfds with
// memfd_create (name, size, seals), System V segments with their id
// (/proc/sys/kernel/shm_next_id), key, mode and owner, or the live segment
// when it still exists. Mappings are made from these in each process.
func (r *restorer) openShm() error {
	r.shm = map[uint64]*os.File{}
	if err := r.restoreIPC(); err != nil {
		return err
	}
	for _, s := range r.tree.Shm {
		var err error
		switch s.Kind {
		case image.ShmAnon:
			err = r.shmAnon(s)
		case image.ShmMemfd:
			err = r.shmMemfd(s, s.Name)
		case image.ShmDeleted:
			// Only the processes that map it could reach it: a memfd
			// named after the file serves them the same.
			err = r.shmMemfd(s, memfdName(filepath.Base(s.Name)))
		case image.ShmSysV:
			err = r.shmSysV(s)
		}
		if err != nil {
			return fmt.Errorf("shared memory %s: %w", shmName(s), err)
		}
	}
	return nil
}

func shmName(s *image.SharedMem) string {
	switch s.Kind {
	case image.ShmMemfd:
		return "memfd:" + s.Name
	case image.ShmDeleted:
		return "deleted file " + s.Name
	case image.ShmSysV:
		return fmt.Sprintf("System V shmid %d key %#x", s.SysV.ShmID, uint32(s.SysV.Key))
	}
	return fmt.Sprintf("shared anonymous memory (%d bytes)", s.Size)
}

func (r *restorer) keepShm(s *image.SharedMem, fd int) {
	f := os.NewFile(uintptr(fd), shmName(s))
	r.shm[s.ID] = f
	r.extra = append(r.extra, f)
}

func (r *restorer) shmAnon(s *image.SharedMem) error {
	if s.Size <= 0 {
		return fmt.Errorf("size %d", s.Size)
	}
	b, err := unix.Mmap(-1, 0, int(s.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(b) //nolint:errcheck
	for _, e := range s.Extents {
		copy(b[e.Off:], e.Data)
	}
	a := sliceAddr(b)
	fd, err := unix.Open(fmt.Sprintf("/proc/self/map_files/%x-%x", a, a+uintptr(len(b))), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the new object through map_files: %w", err)
	}
	r.keepShm(s, fd)
	return nil
}

// memfdName cuts name to what memfd_create takes (249 bytes).
func memfdName(name string) string {
	if len(name) > 249 {
		name = name[:249]
	}
	return name
}

func (r *restorer) shmMemfd(s *image.SharedMem, name string) error {
	fl := unix.MFD_CLOEXEC
	if s.Seals&^fSealSeal != 0 || s.Seals == 0 {
		fl |= unix.MFD_ALLOW_SEALING
	}
	fd, err := unix.MemfdCreate(name, fl)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	r.keepShm(s, fd)
	if err := unix.Ftruncate(fd, s.Size); err != nil {
		return err
	}
	for _, e := range s.Extents {
		if _, err := unix.Pwrite(fd, e.Data, e.Off); err != nil {
			return err
		}
	}
	if seals := s.Seals &^ fSealSeal; seals != 0 || s.Seals&fSealSeal != 0 && fl&unix.MFD_ALLOW_SEALING != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, s.Seals); err != nil {
			return fmt.Errorf("F_ADD_SEALS %#x: %w", s.Seals, err)
		}
	}
	return nil
}

func (r *restorer) shmSysV(s *image.SharedMem) error {
	v := s.SysV
	var d unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(v.ShmID, unix.IPC_STAT, &d); err == nil {
		// Still there (not removed, or still attached elsewhere): the
		// processes attach the live segment, as they would a file.
		if d.Perm.Key != v.Key || int64(d.Segsz) != s.Size {
			return fmt.Errorf("shmid %d now has key %#x and %d bytes, the image has %#x and %d: %w",
				v.ShmID, uint32(d.Perm.Key), d.Segsz, uint32(v.Key), s.Size, ErrMismatch)
		}
		return nil
	}
	if err := sysvipc.SetNextID("shm", v.ShmID); err != nil {
		return fmt.Errorf("setting shm_next_id: %w", err)
	}
	id, err := unix.SysvShmGet(int(v.Key), int(s.Size), unix.IPC_CREAT|unix.IPC_EXCL|int(v.Mode&0o777))
	_ = sysvipc.SetNextID("shm", -1)
	if err != nil {
		return fmt.Errorf("shmget: %w", err)
	}
	r.shmCreated = append(r.shmCreated, id)
	if id != v.ShmID {
		return fmt.Errorf("shmget gave id %d, want %d", id, v.ShmID)
	}
	if len(s.Extents) > 0 {
		b, err := unix.SysvShmAttach(id, 0, 0)
		if err != nil {
			return fmt.Errorf("shmat: %w", err)
		}
		for _, e := range s.Extents {
			copy(b[e.Off:], e.Data)
		}
		if err := unix.SysvShmDetach(b); err != nil {
			return err
		}
	}
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
		return err
	}
	d.Perm.Uid, d.Perm.Gid, d.Perm.Mode = v.UID, v.GID, v.Mode&0o777
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &d); err != nil {
		return fmt.Errorf("IPC_SET: %w", err)
	}
	if v.Removed {
		r.shmRemove = append(r.shmRemove, id)
	}
	return nil
}

// mapShm maps a shared memory object into the process: System V segments
// with an injected shmat at the saved address, the others with mmap of the
// restorer's descriptor.
func (r *restorer) mapShm(in *ptrace.Injector, m *image.Mapping, prot uint64) error {
	s := r.tree.ShmObj(m.Shm)
	if s.Kind == image.ShmSysV {
		fl := uint64(0)
		if prot&unix.PROT_WRITE == 0 {
			fl |= shmRdonly
		}
		if prot&unix.PROT_EXEC != 0 {
			fl |= shmExec
		}
		got, err := in.Syscall(unix.SYS_SHMAT, uint64(s.SysV.ShmID), m.Start, fl)
		if err != nil {
			return fmt.Errorf("shmat(%d): %w", s.SysV.ShmID, err)
		}
		if got != m.Start {
			return fmt.Errorf("shmat(%d) attached at %#x", s.SysV.ShmID, got)
		}
		if prot&unix.PROT_READ == 0 || m.Size() != uint64(s.Size+image.PageSize-1)&^(image.PageSize-1) {
			return fmt.Errorf("segment %d mapped %#x-%#x with protection %#x: only whole attachments are restored", s.SysV.ShmID, m.Start, m.End, prot)
		}
		return nil
	}
	fd, err := r.getFD(in, int(r.shm[m.Shm].Fd()))
	if err != nil {
		return err
	}
	flags := uint64(unix.MAP_FIXED | unix.MAP_PRIVATE)
	if m.Shared {
		flags = unix.MAP_FIXED | unix.MAP_SHARED
	}
	if _, err := in.Syscall(unix.SYS_MMAP, m.Start, m.Size(), prot, flags, uint64(fd), m.Offset); err != nil {
		return err
	}
	_, err = in.Syscall(unix.SYS_CLOSE, uint64(fd))
	return err
}

// openMemfd opens a new description of the restored memfd for a memfd fd.
func (r *restorer) openMemfd(fd *image.FD, flags int) (*os.File, error) {
	f := r.shm[fd.Shm]
	if f == nil {
		return nil, fmt.Errorf("memfd %d was not created", fd.Shm)
	}
	// O_NOFOLLOW (shm_open sets it) would refuse the magic link.
	g, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), flags&^unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if fd.Flags&unix.O_APPEND == 0 {
		if _, err := g.Seek(fd.Offset, 0); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// finishShm removes, once every process is attached, the System V
// segments that had been removed while attached; on failure it removes
// the segments this restore created.
func (r *restorer) finishShm(failed bool) {
	r.finishIPC(failed)
	ids := r.shmRemove
	if failed {
		ids = r.shmCreated
	}
	for _, id := range ids {
		_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	}
}
