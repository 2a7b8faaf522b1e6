package backend

import (
	"errors"
	"io"
	"io/fs"

	"github.com/ckpt/ckpt/internal/vfs"
)

// readDirBatch is how many directory entries a listing holds at once.
const readDirBatch = 256

// eachDirEntry calls fn for the entries of directory dir, reading them in
// batches where the filesystem can (os.File.ReadDir(n)), so a directory of
// many thousands of blobs is never held whole; other filesystems (the
// in-memory one of the tests) are read whole. The order is the
// directory's, not sorted.
func eachDirEntry(fsys vfs.FS, dir string, fn func(fs.DirEntry) error) error {
	f, err := fsys.Open(dir)
	if err != nil {
		return err
	}
	rd, ok := f.(interface {
		ReadDir(n int) ([]fs.DirEntry, error)
	})
	if !ok {
		f.Close()
		ents, err := fsys.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
	defer f.Close()
	for {
		ents, err := rd.ReadDir(readDirBatch)
		for _, e := range ents {
			if err := fn(e); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
