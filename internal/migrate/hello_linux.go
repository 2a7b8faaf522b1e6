package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/ptrace"
	"github.com/ckpt/ckpt/internal/restore"
)

// treeIDs lists the PIDs and TIDs of the tree rooted at pid as it is now
// (the hello's; the tree may still change before the freeze, and the
// restore checks again).
func treeIDs(pid int) []int {
	var ids []int
	var walk func(p int)
	walk = func(p int) {
		tids, err := procfs.Tasks(p)
		if err != nil {
			return // exited
		}
		ids = append(ids, tids...)
		kids, _ := procfs.Children(p)
		for _, c := range kids {
			walk(c)
		}
	}
	walk(pid)
	return ids
}

// vdsoHash is the SHA-256 of pid's vdso, as the dump records it ("" when
// it cannot be read).
func vdsoHash(pid int) string {
	b, err := procfs.Read(pid, "maps")
	if err != nil {
		return ""
	}
	maps, err := procfs.ParseMaps(b)
	if err != nil {
		return ""
	}
	for _, e := range maps {
		if e.Path != "[vdso]" {
			continue
		}
		mem, err := ptrace.OpenMem(pid)
		if err != nil {
			return ""
		}
		defer mem.Close()
		buf := make([]byte, e.End-e.Start)
		if err := mem.Read(e.Start, buf); err != nil {
			return ""
		}
		sum := sha256.Sum256(buf)
		return hex.EncodeToString(sum[:])
	}
	return ""
}

// checkHello refuses at once, before any page is sent, what the restore
// would refuse at the end: a PID of the tree held by a live process here,
// or a vdso from another kernel build.
func checkHello(h Hello) error {
	for _, id := range h.PIDs {
		b, err := procfs.Read(id, "stat")
		if err != nil {
			continue
		}
		st, err := procfs.ParseStat(b)
		if err == nil && st.State != 'Z' && st.State != 'X' {
			return fmt.Errorf("PID %d is used by process %d (%s) here: %w", id, st.PID, st.Comm, restore.ErrPIDInUse)
		}
	}
	if h.Vdso != "" {
		if mine := vdsoHash(os.Getpid()); mine != "" && mine != h.Vdso {
			return fmt.Errorf("the source's kernel (%s) has another vdso than this one (another kernel build): %w", h.Kernel, restore.ErrMismatch)
		}
	}
	return nil
}
