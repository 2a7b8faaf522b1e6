package ptrace

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mem reads and writes a process's memory. It does not need the tracer
// thread, but the process must be stopped for the contents to be consistent.
type Mem struct {
	PID  int
	file *os.File
}

// OpenMem opens /proc/PID/mem read-write (root can then write read-only
// private pages, as a debugger does).
func OpenMem(pid int) (*Mem, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &Mem{PID: pid, file: f}, nil
}

// Close closes /proc/PID/mem.
func (m *Mem) Close() error { return m.file.Close() }

// Read fills b from addr: process_vm_readv first, /proc/PID/mem for what it
// cannot read (PROT_NONE pages and the like).
func (m *Mem) Read(addr uint64, b []byte) error {
	done := 0
	for done < len(b) {
		local := []unix.Iovec{{Base: &b[done]}}
		local[0].SetLen(len(b) - done)
		remote := []unix.RemoteIovec{{Base: uintptr(addr) + uintptr(done), Len: len(b) - done}}
		n, err := unix.ProcessVMReadv(m.PID, local, remote, 0)
		if err != nil || n <= 0 {
			break
		}
		done += n
	}
	for done < len(b) {
		n, err := m.file.ReadAt(b[done:], int64(addr)+int64(done))
		done += n
		if err != nil && done < len(b) {
			return fmt.Errorf("reading %d bytes at %#x of process %d: %w", len(b), addr, m.PID, err)
		}
	}
	return nil
}

// Write stores b at addr through /proc/PID/mem (works on read-only pages).
func (m *Mem) Write(addr uint64, b []byte) error {
	done := 0
	for done < len(b) {
		n, err := m.file.WriteAt(b[done:], int64(addr)+int64(done))
		done += n
		if err != nil && done < len(b) {
			return fmt.Errorf("writing %d bytes at %#x of process %d: %w", len(b), addr, m.PID, err)
		}
	}
	return nil
}

// maxIov is the kernel's IOV_MAX, the most iovecs one call takes.
const maxIov = 1024

// WriteV stores the buffers one after another from addr: process_vm_writev
// with one iovec per buffer (up to IOV_MAX a call), and /proc/PID/mem for
// what it cannot write (pages not writable at the moment). The buffers are
// written from where they lie: no copy into a staging buffer.
func (m *Mem) WriteV(addr uint64, bufs [][]byte) error {
	local := make([]unix.Iovec, 0, min(len(bufs), maxIov))
	for len(bufs) > 0 {
		local = local[:0]
		total := 0
		for _, b := range bufs[:min(len(bufs), maxIov)] {
			if len(b) == 0 {
				continue
			}
			iov := unix.Iovec{Base: &b[0]}
			iov.SetLen(len(b))
			local = append(local, iov)
			total += len(b)
		}
		k := min(len(bufs), maxIov)
		done := 0
		if total > 0 {
			remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: total}}
			n, err := unix.ProcessVMWritev(m.PID, local, remote, 0)
			if err == nil && n > 0 {
				done = n
			}
		}
		// Whatever process_vm_writev left (it stops at the first page it
		// cannot write) goes through /proc/PID/mem.
		skip := done
		for _, b := range bufs[:k] {
			if skip >= len(b) {
				skip -= len(b)
				continue
			}
			if err := m.Write(addr+uint64(done), b[skip:]); err != nil {
				return err
			}
			done += len(b) - skip
			skip = 0
		}
		addr += uint64(total)
		bufs = bufs[k:]
	}
	return nil
}
