package dump

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// inFlight describes descriptors in flight (SCM_RIGHTS) that the peek put
// in this process (copies sharing their open file descriptions), and
// closes them. Regular files, directories and the plain devices are
// saved; anything else is a refusal naming it.
func inFlight(fds []int) ([]*image.FD, string) {
	defer closeAll(fds)
	var out []*image.FD
	for i, f := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f))
		if err != nil {
			return nil, fmt.Sprintf("a descriptor in flight (SCM_RIGHTS) that cannot be read: %v", err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(f, &st); err != nil {
			return nil, fmt.Sprintf("a descriptor in flight (SCM_RIGHTS) %s: %v", link, err)
		}
		ib, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f))
		if err != nil {
			return nil, fmt.Sprintf("a descriptor in flight (SCM_RIGHTS) %s: %v", link, err)
		}
		info, err := procfs.ParseFdinfo(ib)
		if err != nil {
			return nil, fmt.Sprintf("a descriptor in flight (SCM_RIGHTS) %s: %v", link, err)
		}
		fd := &image.FD{Num: i, Path: link, Flags: int(info.Flags &^ unix.O_CLOEXEC), Offset: info.Pos}
		switch mode := st.Mode & unix.S_IFMT; {
		case (mode == unix.S_IFREG || mode == unix.S_IFDIR) && strings.HasPrefix(link, "/") && !strings.HasSuffix(link, " (deleted)"):
			fd.Kind = image.FDFile
			fd.File = FileIdentity(&st)
		case mode == unix.S_IFCHR && devices[link]:
			fd.Kind = image.FDDevice
		default:
			return nil, fmt.Sprintf("with file descriptors in flight (SCM_RIGHTS: %s; only regular files, directories and %s can be restored in flight)", link, "/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom")
		}
		out = append(out, fd)
	}
	return out, ""
}
