package backend

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/ckpt/ckpt/internal/vfs"
	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages now, so the
// fsync at Sync finds little left to do and writes overlap computation.
func startWriteback(f vfs.File) {
	if of, ok := f.(*os.File); ok {
		_ = unix.SyncFileRange(int(of.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// flockLocker takes flock(2) locks on files in dir; the kernel drops them
// when the holder dies, so a killed checkpointer never wedges a repository.
type flockLocker struct{ dir string }

func (l flockLocker) lock(ctx context.Context, name string, excl bool) (Unlocker, error) {
	f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_SH
	if excl {
		how = unix.LOCK_EX
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return unlockFunc(func() error {
				defer f.Close()
				return unix.Flock(int(f.Fd()), unix.LOCK_UN)
			}), nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ErrLocked
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}
