package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/policy"
	"github.com/ckpt/ckpt/internal/supervise"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// runPolicyFlags are the flags of 'ckpt run' that choose when to
// checkpoint (internal/policy).
type runPolicyFlags struct {
	mtbf, cost, margin, preemptPoll time.Duration
	signals                         []string
	deadline, preemptURL            string
}

func (f *runPolicyFlags) addFlags(c *cobra.Command) {
	fl := c.Flags()
	fl.DurationVar(&f.mtbf, "mtbf", 0, "mean time between failures for --every auto|young (default: estimated from the job's recorded crashes)")
	fl.DurationVar(&f.cost, "cost", policy.DefaultCost, "checkpoint cost assumed until one is measured")
	fl.StringArrayVar(&f.signals, "signal", nil, "also checkpoint and stop on this signal (e.g. SIGXCPU); SIG:continue checkpoints and continues (repeatable)")
	fl.StringVar(&f.deadline, "deadline", "", "walltime end: RFC 3339 time or duration from now (default: $"+policy.EnvDeadline+" when set); checkpoint and stop before it")
	fl.DurationVar(&f.margin, "margin", 30*time.Second, "safety margin before --deadline, on top of the measured checkpoint cost")
	fl.StringVar(&f.preemptURL, "preempt-url", "", "cloud metadata URL to poll for a preemption notice (GCE instance/preempted, AWS spot/instance-action, Azure scheduledevents)")
	fl.DurationVar(&f.preemptPoll, "preempt-poll", policy.DefaultPreemptPoll, "how often to poll --preempt-url")
}

// apply validates the flags and sets the policy fields of o.
func (f *runPolicyFlags) apply(o *supervise.Options, every string) error {
	mode, d, err := policy.ParseMode(every)
	if err != nil {
		return usageError("--every %v", err)
	}
	if f.mtbf < 0 || f.cost < 0 || f.margin < 0 {
		return usageError("--mtbf, --cost and --margin must not be negative")
	}
	o.Every = d
	o.Policy = policy.Policy{Mode: mode, Every: d, MTBF: f.mtbf, InitialCost: f.cost}
	for _, v := range f.signals {
		name, cont := strings.CutSuffix(v, ":continue")
		sig, err := parseSignal(name)
		if err != nil {
			return usageError("--signal %q: %v", v, err)
		}
		if cont {
			o.CheckpointSignals = append(o.CheckpointSignals, sig)
		} else {
			o.StopSignals = append(o.StopSignals, sig)
		}
	}
	if f.deadline != "" {
		if o.Deadline, err = policy.ParseDeadline(f.deadline, time.Now()); err != nil {
			return usageError("--deadline %v", err)
		}
	} else if t, ok, err := policy.DeadlineFromEnv(os.Getenv); err != nil {
		return usageError("%v", err)
	} else if ok {
		o.Deadline = t
	}
	o.Margin = f.margin
	if f.preemptURL != "" {
		if !strings.HasPrefix(f.preemptURL, "http://") && !strings.HasPrefix(f.preemptURL, "https://") {
			return usageError("--preempt-url %q: want an http(s) URL", f.preemptURL)
		}
		o.Preempt = &policy.Preempt{URL: f.preemptURL, Every: f.preemptPoll}
	}
	return nil
}

// parseSignal accepts SIGXCPU, XCPU, xcpu or a number.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %s", s)
	}
	switch sig {
	case unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGINT:
		return 0, fmt.Errorf("%s cannot be used", name)
	}
	return sig, nil
}
