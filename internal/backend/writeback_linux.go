package backend

import (
	"os"

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
