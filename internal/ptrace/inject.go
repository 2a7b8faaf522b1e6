package ptrace

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Trampoline is written where an injected syscall runs when the tracee has
// no usable syscall instruction: syscall; int3.
var Trampoline = []byte{0x0f, 0x05, 0xcc}

// Injector runs system calls inside a stopped tracee thread. It must be used
// on the tracer thread. Saved holds the registers to put back with Restore.
type Injector struct {
	TID     int
	SysAddr uint64 // address of a syscall instruction in the tracee
	Saved   unix.PtraceRegs
	// Stashed lists signals that arrived while injecting; they were suppressed
	// and the caller decides what to do with them.
	Stashed []int
	// Forks records the ids of tasks created by injected clone calls (from
	// PTRACE_EVENT_FORK/CLONE/VFORK).
	Forks []int
}

// NewInjector saves tid's registers.
func NewInjector(tid int, sysAddr uint64) (*Injector, error) {
	r, err := GetRegs(tid)
	if err != nil {
		return nil, fmt.Errorf("reading registers of %d: %w", tid, err)
	}
	return &Injector{TID: tid, SysAddr: sysAddr, Saved: r}, nil
}

// Syscall runs syscall nr with args and returns the raw rax (negative errno
// on failure) and an error that includes the errno.
func (in *Injector) Syscall(nr int, args ...uint64) (uint64, error) {
	r := in.Saved
	r.Orig_rax = ^uint64(0)
	r.Rax = uint64(nr)
	r.Rip = in.SysAddr
	var a [6]uint64
	copy(a[:], args)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	if err := SetRegs(in.TID, &r); err != nil {
		return 0, fmt.Errorf("injecting syscall %d into %d: setting registers: %w", nr, in.TID, err)
	}
	for phase := 0; phase < 2; phase++ {
		if err := in.step(nr); err != nil {
			return 0, err
		}
	}
	out, err := GetRegs(in.TID)
	if err != nil {
		return 0, fmt.Errorf("injecting syscall %d into %d: reading result: %w", nr, in.TID, err)
	}
	if int64(out.Rax) < 0 && int64(out.Rax) > -4096 {
		return out.Rax, fmt.Errorf("syscall %d in %d: %w", nr, in.TID, syscall.Errno(-int64(out.Rax)))
	}
	return out.Rax, nil
}

// step resumes to the next syscall stop, handling events and signals.
func (in *Injector) step(nr int) error {
	sig := 0
	for {
		if err := SyscallStep(in.TID, sig); err != nil {
			return fmt.Errorf("injecting syscall %d into %d: %w", nr, in.TID, err)
		}
		sig = 0
		ws, err := Wait(in.TID)
		if err != nil {
			return err
		}
		switch {
		case IsSyscallStop(ws):
			return nil
		case ws.Stopped() && Event(ws) != 0:
			switch Event(ws) {
			case unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_CLONE, unix.PTRACE_EVENT_VFORK:
				if m, err := GetEventMsg(in.TID); err == nil {
					in.Forks = append(in.Forks, int(m))
				}
			}
		case ws.Stopped():
			s := int(ws.StopSignal())
			if s != int(unix.SIGSTOP) && s != int(unix.SIGTRAP) {
				in.Stashed = append(in.Stashed, s)
			}
		default:
			return fmt.Errorf("injecting syscall %d into %d: tracee %s", nr, in.TID, Stop(ws))
		}
	}
}

// Restore puts the saved registers back.
func (in *Injector) Restore() error { return SetRegs(in.TID, &in.Saved) }
