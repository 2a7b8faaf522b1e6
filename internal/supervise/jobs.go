// Package supervise runs a program under ckpt (`ckpt run`): it checkpoints
// the program on a timer and on signals, restores it after a crash, resumes
// it when run again under the same name, and records each job's state for
// `ckpt ps`.
package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Job states.
const (
	StateRunning = "running" // under a live `ckpt run`
	StateStopped = "stopped" // checkpointed and stopped (SIGTERM); run again to resume
	StateDone    = "done"    // the program exited by itself; not resumed
	StateFailed  = "failed"  // crashed more often than the restart limit allowed
)

// Job is the record of one named run, kept in the repository directory
// under jobs/ (local runtime state, not part of the checkpoint format).
type Job struct {
	Name           string    `json:"name"`
	State          string    `json:"state"`
	PID            int       `json:"pid,omitempty"`
	SupervisorPID  int       `json:"supervisor_pid,omitempty"`
	Host           string    `json:"host,omitempty"`
	Command        []string  `json:"command"`
	Started        time.Time `json:"started"`
	Updated        time.Time `json:"updated"`
	Restarts       int       `json:"restarts"`
	Checkpoints    int       `json:"checkpoints"`
	LastCheckpoint string    `json:"last_checkpoint,omitempty"`
	LastTime       time.Time `json:"last_checkpoint_time,omitempty"`
	ExitStatus     *int      `json:"exit_status,omitempty"`
	Message        string    `json:"message,omitempty"`
	// Isolate: the program runs as a container (`ckpt run --isolate`) in
	// the cgroup v2 group Cgroup.
	Isolate bool   `json:"isolate,omitempty"`
	Cgroup  string `json:"cgroup,omitempty"`
	Veth    string `json:"veth,omitempty"` // --veth HOST_CIDR,CONTAINER_CIDR

	// Policy state (internal/policy): the program's runtime under ckpt run
	// over all runs of the job, the moving estimate and the newest
	// measurement of the checkpoint cost, the newest restore time, and the
	// interval and mean time between failures in use.
	RuntimeSeconds float64 `json:"runtime_s,omitempty"`
	CostSeconds    float64 `json:"checkpoint_cost_s,omitempty"`
	LastCost       float64 `json:"last_checkpoint_cost_s,omitempty"`
	RestoreSeconds float64 `json:"last_restore_s,omitempty"`
	Interval       float64 `json:"interval_s,omitempty"`
	MTBF           float64 `json:"mtbf_s,omitempty"`
	Deadline       string  `json:"deadline,omitempty"`
}

// Store keeps job records as JSON files in a directory.
type Store struct{ Dir string }

func (s Store) path(name string) string { return filepath.Join(s.Dir, name+".json") }

// Load returns the job of name, or nil when there is none.
func (s Store) Load(name string) (*Job, error) {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job record %s: %w", s.path(name), err)
	}
	return &j, nil
}

// Save writes the record atomically.
func (s Store) Save(j *Job) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	j.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path(j.Name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path(j.Name))
}

// List returns every job, by name. A running job whose supervisor is gone
// is reported as "lost".
func (s Store) List() ([]*Job, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var out []*Job
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		j, err := s.Load(name)
		if err != nil || j == nil {
			continue
		}
		if j.State == StateRunning && j.Host == host && !alive(j.SupervisorPID) {
			j.State = "lost"
		}
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
