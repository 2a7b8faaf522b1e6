// Package policy decides when to checkpoint: the interval between periodic
// checkpoints (fixed, Young's, Daly's, or auto: Daly's with the checkpoint
// cost measured online and the mean time between failures configured or
// estimated from the failures ckpt recorded), walltime deadlines, and cloud
// preemption notices.
//
// The formulas, with C the checkpoint cost (time the program loses to one
// checkpoint) and M the mean time between failures:
//
//   - Young (1974), "A first order approximation to the optimum checkpoint
//     interval", CACM 17(9): τ = √(2CM), from minimising the first-order
//     waste C/τ + τ/(2M).
//   - Daly (2006), "A higher order estimate of the optimum checkpoint
//     interval for restart dumps", FGCS 22(3), eq. (37):
//     τ = √(2CM)·[1 + ⅓·√(C/2M) + ⅑·(C/2M)] − C when C < 2M, else τ = M.
//
// Both give the compute time between the end of one checkpoint and the
// start of the next.
package policy

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Young returns Young's first-order optimum interval √(2CM).
func Young(c, m time.Duration) time.Duration {
	if c <= 0 || m <= 0 {
		return 0
	}
	return seconds(math.Sqrt(2 * c.Seconds() * m.Seconds()))
}

// Daly returns Daly's higher-order optimum interval (Daly 2006, eq. 37).
func Daly(c, m time.Duration) time.Duration {
	if c <= 0 || m <= 0 {
		return 0
	}
	cs, ms := c.Seconds(), m.Seconds()
	if cs >= 2*ms {
		return m
	}
	x := cs / (2 * ms)
	return seconds(math.Sqrt(2*cs*ms)*(1+math.Sqrt(x)/3+x/9) - cs)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Mode is how the interval is chosen.
type Mode int

const (
	ModeOff   Mode = iota // no periodic checkpoints
	ModeFixed             // a configured interval
	ModeYoung             // Young's √(2CM) with measured C
	ModeDaly              // Daly's formula with measured C ("auto")
)

func (m Mode) String() string {
	switch m {
	case ModeFixed:
		return "fixed"
	case ModeYoung:
		return "young"
	case ModeDaly:
		return "auto"
	}
	return "off"
}

// ParseMode parses the value of --every: "", "0" (off), a duration
// (fixed), "young", "daly" or "auto" (Daly with measured cost).
func ParseMode(s string) (Mode, time.Duration, error) {
	switch strings.ToLower(s) {
	case "", "0", "off":
		return ModeOff, 0, nil
	case "auto", "daly":
		return ModeDaly, 0, nil
	case "young":
		return ModeYoung, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return ModeOff, 0, fmt.Errorf("%q: want a duration like 30s or 10m, or auto, young, daly", s)
	}
	if d == 0 {
		return ModeOff, 0, nil
	}
	return ModeFixed, d, nil
}

// Defaults of a Policy.
const (
	// DefaultCost is the checkpoint cost assumed until one is measured.
	DefaultCost = 10 * time.Second
	// DefaultMTBF is the prior of the failure-history estimate: one
	// pseudo-failure in this much runtime (see Policy.M).
	DefaultMTBF = 24 * time.Hour
	// DefaultAlpha is the weight of the newest cost in the moving estimate.
	DefaultAlpha = 0.3
	// MinInterval bounds computed intervals from below, so that a tiny
	// measured cost cannot make ckpt checkpoint continuously.
	MinInterval = 100 * time.Millisecond
)

// Policy computes the checkpoint interval. The zero value is ModeOff. It is
// not safe for concurrent use.
type Policy struct {
	Mode  Mode
	Every time.Duration // ModeFixed: the interval
	// MTBF is the configured mean time between failures; 0: estimate it
	// from Runtime and Failures.
	MTBF time.Duration
	// InitialCost is the cost assumed before the first measurement
	// (0: DefaultCost).
	InitialCost time.Duration
	// Alpha is the weight of the newest measurement in the exponentially
	// weighted moving average of costs (0: DefaultAlpha).
	Alpha float64
	// Min and Max clamp computed intervals (0: MinInterval, no maximum).
	Min, Max time.Duration

	cost     time.Duration // moving estimate; 0 before any measurement
	last     time.Duration // newest measurement
	n        int           // measurements
	runtime  time.Duration // the job's runtime so far, all runs together
	failures int           // failures (crashes restarted) in that runtime
}

// ObserveCost records the measured cost of a checkpoint.
func (p *Policy) ObserveCost(c time.Duration) {
	if c < 0 {
		return
	}
	a := p.Alpha
	if a <= 0 || a > 1 {
		a = DefaultAlpha
	}
	if p.n == 0 {
		p.cost = c
	} else {
		p.cost = time.Duration(a*float64(c) + (1-a)*float64(p.cost))
	}
	p.last = c
	p.n++
}

// SeedCost starts the moving estimate at c (a cost recorded by an earlier
// run of the job) as if it had been measured once.
func (p *Policy) SeedCost(c time.Duration) {
	if c > 0 && p.n == 0 {
		p.ObserveCost(c)
	}
}

// SetHistory gives the job's runtime so far and the failures in it.
func (p *Policy) SetHistory(runtime time.Duration, failures int) {
	p.runtime, p.failures = runtime, failures
}

// Cost is the moving estimate of the checkpoint cost (InitialCost or
// DefaultCost before any measurement).
func (p *Policy) Cost() time.Duration {
	if p.n > 0 {
		return p.cost
	}
	if p.InitialCost > 0 {
		return p.InitialCost
	}
	return DefaultCost
}

// WorstCost is the larger of the moving estimate and the newest
// measurement: what a checkpoint before a deadline must be given.
func (p *Policy) WorstCost() time.Duration {
	return max(p.Cost(), p.last)
}

// Measured reports how many costs were observed.
func (p *Policy) Measured() int { return p.n }

// M returns the mean time between failures in use: the configured one,
// else (runtime + DefaultMTBF) / (failures + 1). That estimate is the
// posterior mean failure interval under a prior worth one failure in
// DefaultMTBF: with no failures seen it starts at DefaultMTBF and grows with
// failure-free runtime; after many failures it approaches runtime/failures,
// the observed restarts per hour of runtime inverted.
func (p *Policy) M() time.Duration {
	if p.MTBF > 0 {
		return p.MTBF
	}
	return (p.runtime + DefaultMTBF) / time.Duration(p.failures+1)
}

// Interval is the time from the end of a checkpoint to the start of the
// next; 0 when the mode is ModeOff.
func (p *Policy) Interval() time.Duration {
	var d time.Duration
	switch p.Mode {
	case ModeOff:
		return 0
	case ModeFixed:
		return p.Every
	case ModeYoung:
		d = Young(p.Cost(), p.M())
	case ModeDaly:
		d = Daly(p.Cost(), p.M())
	}
	lo := p.Min
	if lo <= 0 {
		lo = MinInterval
	}
	d = max(d, lo)
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	return d
}
