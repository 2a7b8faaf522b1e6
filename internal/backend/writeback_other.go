//go:build !linux

package backend

import "github.com/ckpt/ckpt/internal/vfs"

// startWriteback has no portable equivalent of sync_file_range: the fsync
// at Sync does all the work.
func startWriteback(vfs.File) {}
