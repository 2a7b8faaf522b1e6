package ptrace_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

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

// TestWaitKilledLeader: waiting for the leader of a traced multi-threaded
// process that gets killed returns (its exit is reported only once the
// tracer reaped the other threads, which the wait does meanwhile) instead
// of blocking forever.
func TestWaitKilledLeader(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root")
		}
		t.Skip("needs root for ptrace")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("needs /usr/bin/python3")
	}
	cmd := exec.Command("/usr/bin/python3", "-c", `import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()
print("R", flush=True)
time.sleep(100)`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Without the fix both would block forever: not waited for here.
	defer func() { _ = cmd.Process.Kill(); go cmd.Wait() }() //nolint:errcheck
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "R\n" {
		t.Fatalf("python3 said %q, %v", line, err)
	}
	pid := cmd.Process.Pid
	tr := ptrace.NewTracer()
	defer func() { go tr.Close() }()
	err = tr.Do(func() error {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		if len(tasks) < 4 {
			return fmt.Errorf("%d threads, want 4", len(tasks))
		}
		for _, e := range tasks {
			tid, _ := strconv.Atoi(e.Name())
			if err := ptrace.Seize(tid, ptrace.OptsDump); err != nil {
				return err
			}
			if err := ptrace.Interrupt(tid); err != nil {
				return err
			}
			if _, err := ptrace.Wait(tid); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		got <- tr.Do(func() error {
			for {
				ws, err := ptrace.Wait(pid)
				if err != nil || ws.Exited() || ws.Signaled() {
					return err
				}
				_ = ptrace.Cont(pid, 0) // an exit event stop: let it go on
			}
		})
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the wait for the killed leader did not return in 20 s")
	}
}
