package restore

import (
	"fmt"

	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

// inFlight opens the descriptors that were in flight (SCM_RIGHTS) with
// message i of socket s's queue and returns the control message that sends
// them again, and done, which closes them once sent (the kernel holds them
// from then on).
func (r *restorer) inFlight(s *image.UnixSocket, i int) (oob []byte, done func(), err error) {
	var fds []int
	closeFDs := func() {
		for _, d := range fds {
			unix.Close(d)
		}
	}
	defer func() {
		if err != nil {
			closeFDs() // not done: an error return has set it to nil
		}
	}()
	var owner *image.Process // found at the first descriptor: most messages carry none
	for _, in := range s.Rights {
		if in.Msg != i {
			continue
		}
		if owner == nil {
			owner = r.socketOwner(s)
		}
		for _, fd := range in.FDs {
			if fd.Kind != image.FDFile && fd.Kind != image.FDDevice {
				return nil, nil, fmt.Errorf("%s of kind %q cannot be sent again", fd.Path, fd.Kind)
			}
			f, err := r.openFD(owner, fd, nil)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", fd.Path, err)
			}
			d, err := unix.Dup(int(f.Fd()))
			f.Close()
			if err != nil {
				return nil, nil, err
			}
			fds = append(fds, d)
		}
	}
	if len(fds) == 0 {
		return nil, closeFDs, nil
	}
	return unix.UnixRights(fds...), closeFDs, nil
}

// socketOwner is the first process of the tree with a descriptor on s (an
// empty one if none has).
func (r *restorer) socketOwner(s *image.UnixSocket) *image.Process {
	for _, p := range r.tree.Processes {
		for _, fd := range p.FDs {
			if fd.Socket == s.ID {
				return p
			}
		}
	}
	return &image.Process{}
}
