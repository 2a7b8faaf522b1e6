package ptrace_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/ckpt/ckpt/internal/ptrace"
	"golang.org/x/sys/unix"
)

func TestTracerThread(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	for i := 0; i < 10; i++ {
		var tid int
		_ = tr.Do(func() error { tid = unix.Gettid(); return nil })
		if tid != tr.ThreadID() {
			t.Fatalf("closure ran on thread %d, tracer is %d", tid, tr.ThreadID())
		}
	}
	tr.Close()
	if err := tr.Do(func() error { return nil }); err != ptrace.ErrClosed {
		t.Errorf("Do after Close: %v", err)
	}
}

// TestInject seizes a sleeping process, injects getpid and mmap, reads and
// writes its memory, and lets it go.
func TestInject(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root")
		}
		t.Skip("needs root for ptrace")
	}
	cmd := exec.Command("/bin/sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	tr := ptrace.NewTracer()
	defer tr.Close()
	err := tr.Do(func() error {
		if err := ptrace.Seize(pid, ptrace.OptsDump); err != nil {
			return err
		}
		if err := ptrace.Interrupt(pid); err != nil {
			return err
		}
		ws, err := ptrace.Wait(pid)
		if err != nil {
			return err
		}
		if ptrace.Event(ws) != unix.PTRACE_EVENT_STOP {
			t.Errorf("stop: %s", ptrace.Stop(ws))
		}
		xs, err := ptrace.GetXState(pid)
		if err != nil || len(xs) < 576 {
			t.Errorf("xstate: %d bytes, %v", len(xs), err)
		}
		regs, _ := ptrace.GetRegs(pid)
		mem, err := ptrace.OpenMem(pid)
		if err != nil {
			return err
		}
		defer mem.Close()
		orig := make([]byte, 3)
		if err := mem.Read(regs.Rip, orig); err != nil {
			return err
		}
		if err := mem.Write(regs.Rip, ptrace.Trampoline); err != nil {
			return err
		}
		in := &ptrace.Injector{TID: pid, SysAddr: regs.Rip, Saved: regs}
		got, err := in.Syscall(unix.SYS_GETPID)
		if err != nil || int(got) != pid {
			t.Errorf("injected getpid = %d, %v", got, err)
		}
		addr, err := in.Syscall(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		if err := mem.Write(addr, []byte("hello")); err != nil {
			return err
		}
		b := make([]byte, 5)
		if err := mem.Read(addr, b); err != nil || string(b) != "hello" {
			t.Errorf("read back %q %v", b, err)
		}
		if _, err := in.Syscall(unix.SYS_MUNMAP, addr, 4096); err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_MUNMAP, 1, 4096); err == nil {
			t.Error("munmap of an unaligned address succeeded")
		}
		if err := mem.Write(regs.Rip, orig); err != nil {
			return err
		}
		if err := in.Restore(); err != nil {
			return err
		}
		return ptrace.Detach(pid, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
}
