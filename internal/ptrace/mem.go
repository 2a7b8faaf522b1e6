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
