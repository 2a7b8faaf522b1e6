package restore

import (
	"fmt"
	"sort"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

// pageFiller puts saved pages into the restored process's fresh anonymous
// mappings with UFFDIO_COPY: the kernel allocates each page and copies the
// bytes into it, where process_vm_writev would fault the page in (zeroing
// it) through get_user_pages and then copy; on a restore that is a fifth
// to a quarter of the CPU time. The userfaultfd is created inside the
// stopped process by an injected call, taken over with pidfd_getfd and
// closed there at once (as package dirty does), so the process never holds
// it; closing ours unregisters every range. Anything it cannot place (file
// mappings, a page already there) goes through process_vm_writev.
type pageFiller struct {
	mem  *ptrace.Mem
	fd   int           // -1: no userfaultfd, everything through mem
	regs []image.Range // registered ranges, ascending
}

// newPageFiller registers p's anonymous private mappings with a
// userfaultfd made in p. It never fails: without userfaultfd every page is
// written through mem.
func (r *restorer) newPageFiller(p *rproc) *pageFiller {
	f := &pageFiller{mem: p.mem, fd: -1}
	fd, err := takeUffd(p.pid, p.in) // the PID this process sees, not the one inside a container
	if err != nil {
		return f
	}
	for _, m := range p.img.Mappings {
		switch m.Kind {
		case image.KindAnon, image.KindHeap, image.KindStack, image.KindDeleted:
		default:
			continue
		}
		if m.Saved == 0 || m.Shared {
			continue
		}
		reg := uffdioRegisterArg{Start: m.Start, Len: m.Size(), Mode: uffdRegisterMissng}
		if uffdRegisterCall(fd, &reg) != 0 {
			continue
		}
		f.regs = append(f.regs, image.Range{Addr: m.Start, Len: m.Size()})
	}
	if len(f.regs) == 0 {
		unix.Close(fd)
		return f
	}
	sort.Slice(f.regs, func(i, j int) bool { return f.regs[i].Addr < f.regs[j].Addr })
	f.fd = fd
	return f
}

// takeUffd creates a userfaultfd in the stopped process pid through in and
// returns a descriptor of it in this process; pid's copy is closed.
func takeUffd(pid int, in *ptrace.Injector) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pidfd)
	raw, err := in.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly)
	if err != nil {
		return -1, err
	}
	fd, gerr := unix.PidfdGetfd(pidfd, int(raw), 0)
	if _, cerr := in.Syscall(unix.SYS_CLOSE, raw); cerr != nil {
		if gerr == nil {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("closing the injected userfaultfd %d: %w", raw, cerr)
	}
	if gerr != nil {
		return -1, gerr
	}
	api := uffdioAPIArg{API: uffdAPI}
	if e := uffdAPICall(fd, &api); e != 0 {
		unix.Close(fd)
		return -1, e
	}
	return fd, nil
}

// write puts b at addr: the parts in registered ranges with UFFDIO_COPY,
// the others with process_vm_writev (which must not touch a registered
// range's missing pages: a userfaultfd for user faults only makes that
// fail). It is safe for concurrent use.
func (f *pageFiller) write(addr uint64, b []byte) error {
	if f.fd < 0 || addr%image.PageSize != 0 || len(b)%image.PageSize != 0 {
		return f.mem.WriteV(addr, [][]byte{b})
	}
	i := sort.Search(len(f.regs), func(k int) bool { return f.regs[k].Addr+f.regs[k].Len > addr })
	for len(b) > 0 {
		var n uint64
		if i < len(f.regs) && f.regs[i].Addr <= addr {
			n = min(uint64(len(b)), f.regs[i].Addr+f.regs[i].Len-addr)
			if err := f.copy(addr, b[:n]); err != nil {
				return err
			}
			i++
		} else {
			n = uint64(len(b))
			if i < len(f.regs) {
				n = min(n, f.regs[i].Addr-addr)
			}
			if err := f.mem.WriteV(addr, [][]byte{b[:n]}); err != nil {
				return err
			}
		}
		addr, b = addr+n, b[n:]
	}
	return nil
}

// copy places b at addr, inside one registered range.
func (f *pageFiller) copy(addr uint64, b []byte) error {
	for len(b) > 0 {
		n, e := uffdCopy(f.fd, addr, b)
		addr, b = addr+uint64(n), b[n:]
		switch e {
		case 0, unix.EAGAIN:
		case unix.EEXIST:
			// A page is there already (touched before the restore
			// wrote it): process_vm_writev finds it without a fault.
			if err := f.mem.WriteV(addr, [][]byte{b[:image.PageSize]}); err != nil {
				return err
			}
			addr, b = addr+image.PageSize, b[image.PageSize:]
		default:
			return fmt.Errorf("UFFDIO_COPY of %d bytes at %#x: %w", len(b), addr, e)
		}
	}
	return nil
}

// close unregisters every range.
func (f *pageFiller) close() {
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
}
