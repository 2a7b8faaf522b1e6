package supervise

import (
	"fmt"
	"os"
	"time"

	"github.com/ckpt/ckpt/internal/container"
)

// startContainer starts the program as PID 1 of a new container in s.cg.
func (s *sup) startContainer() (int, error) {
	if err := s.cg.Create(5 * time.Second); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrSupervisor, err)
	}
	cmd, fd, hold, err := container.Command("/proc/self/exe", s.o.Hostname, s.cg, s.o.Command, s.veth != nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrSupervisor, err)
	}
	defer fd.Close()
	if hold != nil {
		defer hold.Close()
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Start()
	if cmd.ExtraFiles != nil {
		cmd.ExtraFiles[0].Close() // init's end of the hold pipe
	}
	if err != nil {
		return 0, fmt.Errorf("%w: starting container %s: %v", ErrSupervisor, s.o.Name, err)
	}
	pid := cmd.Process.Pid
	if s.veth != nil {
		// The program starts once its network is there (init waits for
		// the hold pipe to close).
		err := func() error {
			ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				return err
			}
			defer ns.Close()
			return container.SetupVeth(ns, *s.veth)
		}()
		if err != nil {
			_ = s.cg.Kill()
			_, _ = cmd.Process.Wait()
			return 0, fmt.Errorf("%w: container %s: %v", ErrSupervisor, s.o.Name, err)
		}
	}
	cmd.Process.Release()
	s.job.State, s.job.PID = StateRunning, pid
	s.save()
	return pid, nil
}
