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
	cmd, fd, err := container.Command("/proc/self/exe", s.o.Hostname, s.cg, s.o.Command)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrSupervisor, err)
	}
	defer fd.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%w: starting container %s: %v", ErrSupervisor, s.o.Name, err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	s.job.State, s.job.PID = StateRunning, pid
	s.save()
	return pid, nil
}
