//go:build unix

package backend

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

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
