package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDeadline parses the value of --deadline: an RFC 3339 time
// (2026-11-24T18:00:00Z) or a duration from now (11h30m).
func ParseDeadline(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-11-24T18:00:00Z) or a duration (11h30m)", s)
}

// EnvDeadline is the environment variable with the batch job's end time
// that DeadlineFromEnv reads: Slurm (23.02 and later) sets it in the batch
// job's environment to the Unix time at which the job's time limit ends.
const EnvDeadline = "SLURM_JOB_END_TIME"

// DeadlineFromEnv returns the end time of the batch job this runs in, from
// SLURM_JOB_END_TIME (Unix seconds); ok is false when it is not set (or 0,
// which Slurm uses for no limit).
func DeadlineFromEnv(getenv func(string) string) (t time.Time, ok bool, err error) {
	v := strings.TrimSpace(getenv(EnvDeadline))
	if v == "" {
		return time.Time{}, false, nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, false, fmt.Errorf("%s=%q: not a Unix time", EnvDeadline, v)
	}
	if sec == 0 {
		return time.Time{}, false, nil
	}
	return time.Unix(sec, 0), true, nil
}

// StopAt is when a job that must be checkpointed before deadline has to
// start its final checkpoint: the deadline less the checkpoint cost and a
// safety margin.
func StopAt(deadline time.Time, cost, margin time.Duration) time.Time {
	return deadline.Add(-cost - margin)
}
