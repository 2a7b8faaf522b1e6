package dump

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"os"
	"syscall"

	"github.com/ckpt/ckpt/internal/image"
)

type idCache struct {
	m       map[[2]uint64]*image.FileID
	deleted map[[2]uint64]uint64 // dev, ino of an unlinked file mapped shared: its SharedMem.ID
}

func newIDCache() *idCache {
	return &idCache{m: map[[2]uint64]*image.FileID{}, deleted: map[[2]uint64]uint64{}}
}

// get returns the identity of the file at path (followed through /proc
// magic links), with the ELF build-id of regular ELF files.
func (c *idCache) get(path string) (*image.FileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	key := [2]uint64{st.Dev, st.Ino}
	if id := c.m[key]; id != nil {
		return id, nil
	}
	id := FileIdentity(st)
	if fi.Mode().IsRegular() {
		id.BuildID = BuildID(path)
	}
	c.m[key] = id
	return id, nil
}

// FileIdentity converts stat data to an image.FileID (without build-id).
func FileIdentity(st *syscall.Stat_t) *image.FileID {
	return &image.FileID{Dev: st.Dev, Ino: st.Ino, Mode: st.Mode, Size: st.Size,
		MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
}

// BuildID returns the hex GNU build-id of an ELF file, or "".
func BuildID(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<16 {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			continue
		}
		for len(b) >= 12 {
			nsz := binary.LittleEndian.Uint32(b)
			dsz := binary.LittleEndian.Uint32(b[4:])
			typ := binary.LittleEndian.Uint32(b[8:])
			off := 12 + int(align4(nsz))
			end := off + int(align4(dsz))
			if nsz > 1<<12 || dsz > 1<<12 || end > len(b) {
				break
			}
			if typ == 3 && nsz == 4 && string(b[12:15]) == "GNU" {
				return hex.EncodeToString(b[off : off+int(dsz)])
			}
			b = b[end:]
		}
	}
	return ""
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }
