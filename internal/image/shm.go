package image

import "fmt"

// Shared memory. A mapping of a shared memory object (KindShm) or a memfd
// descriptor (FDMemfd) names the object in Tree.Shm by its inode; the
// object's contents are saved once, in the tree, whatever the number of
// processes that map it.
const (
	KindShm  = "shm"   // Mapping.Shm: MAP_SHARED anonymous memory, a memfd, System V shm, a deleted shared file
	FDMemfd  = "memfd" // FD.Shm: a memfd
	ShmAnon  = "anon"  // MAP_SHARED|MAP_ANONYMOUS (maps shows /dev/zero (deleted))
	ShmMemfd = "memfd"
	ShmSysV  = "sysv"
	// ShmDeleted is an unlinked file mapped shared (Name: its path),
	// restored as a memfd of the same size and contents.
	ShmDeleted = "deleted"
)

// SharedMem is a shared memory object with its contents.
type SharedMem struct {
	ID      uint64   `json:"id"` // inode on the kernel's shmem mount
	Kind    string   `json:"kind"`
	Name    string   `json:"name,omitempty"` // memfd name; path of a deleted file
	Size    int64    `json:"size"`
	Seals   int      `json:"seals,omitempty"` // memfd F_GET_SEALS
	Extents []Extent `json:"extents,omitempty"`
	SysV    *SysVShm `json:"sysv,omitempty"`
}

// Extent is a piece of an object's contents; what no extent covers is zero.
type Extent struct {
	Off  int64  `json:"off"`
	Data []byte `json:"data"`
}

// SysVShm is the ipcs state of a System V shared memory segment.
type SysVShm struct {
	ShmID   int    `json:"shmid"`
	Key     int32  `json:"key"`
	Mode    uint32 `json:"mode"` // permission bits (and SHM_DEST 01000 when removed while attached)
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	Removed bool   `json:"removed,omitempty"` // IPC_RMID done, still attached
}

// ShmObj returns the shared memory object with id, or nil.
func (t *Tree) ShmObj(id uint64) *SharedMem {
	for _, s := range t.Shm {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func (s *SharedMem) validate() error {
	switch s.Kind {
	case ShmAnon, ShmMemfd, ShmSysV, ShmDeleted:
	default:
		return invalid("shared memory %d: unknown kind %q", s.ID, s.Kind)
	}
	if s.Kind == ShmSysV && s.SysV == nil {
		return invalid("shared memory %d: System V segment without its state", s.ID)
	}
	for _, e := range s.Extents {
		if e.Off < 0 || e.Off+int64(len(e.Data)) > s.Size {
			return invalid("shared memory %d: extent %d+%d outside %d bytes", s.ID, e.Off, len(e.Data), s.Size)
		}
	}
	return nil
}

func shmStr(s *SharedMem) string {
	n := 0
	for _, e := range s.Extents {
		n += len(e.Data)
	}
	out := fmt.Sprintf("shm:[%d] %s %d bytes, %d saved", s.ID, s.Kind, s.Size, n)
	if s.Name != "" {
		out += " name " + s.Name
	}
	if s.SysV != nil {
		out += fmt.Sprintf(" shmid %d key %#x mode %#o", s.SysV.ShmID, uint32(s.SysV.Key), s.SysV.Mode)
		if s.SysV.Removed {
			out += " removed"
		}
	}
	return out
}
