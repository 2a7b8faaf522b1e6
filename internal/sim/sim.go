// Package sim is an event-driven simulator of a checkpointed job under
// random failures: the check on the interval formulas of internal/policy
// and the segment costs of internal/plan that does not share their
// algebra.
//
// # Model
//
// A job of Work seconds of computation checkpoints after every Interval
// seconds of work (a checkpoint costs Cost seconds; none after the last
// piece of work unless FinalCheckpoint). Failures strike at any moment of
// work, checkpoint or restart. After a failure the job is down for Downtime
// (failure-free: the requeue or reboot), then reads its newest checkpoint
// back in Restart seconds (failures may strike; then Downtime and Restart
// again), then redoes the work since that checkpoint. A checkpoint counts
// only once it is complete. Failures form a renewal process: the time to
// the next failure is drawn afresh from the distribution when the job comes
// back from a failure (after its downtime), whatever the distribution, so
// for Weibull laws the hazard restarts with each replacement machine.
//
// The simulation walks from event to event (end of a phase or failure),
// drawing failure times from a seeded generator; it does not use any
// expected-value formula.
package sim

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// Dist is a law of the time between failures.
type Dist interface {
	Sample(rng *rand.Rand) float64
	Mean() float64
	String() string
}

// Exponential failures with the given mean.
type Exponential struct{ MTBF float64 }

func (e Exponential) Sample(rng *rand.Rand) float64 { return rng.ExpFloat64() * e.MTBF }
func (e Exponential) Mean() float64                 { return e.MTBF }
func (e Exponential) String() string                { return "exponential" }

// Weibull failures with the given mean and shape k (k < 1: infant
// mortality, failures cluster after a replacement; k = 1: exponential).
// The scale is MTBF/Γ(1 + 1/k).
type Weibull struct{ MTBF, Shape float64 }

func (w Weibull) scale() float64 { return w.MTBF / math.Gamma(1+1/w.Shape) }

// Sample inverts the distribution function 1 − exp(−(t/scale)^k).
func (w Weibull) Sample(rng *rand.Rand) float64 {
	u := rng.Float64()
	return w.scale() * math.Pow(-math.Log1p(-u), 1/w.Shape)
}
func (w Weibull) Mean() float64 { return w.MTBF }
func (w Weibull) String() string {
	return "weibull(k=" + trimFloat(w.Shape) + ")"
}

// Job is what one simulation runs. Times in seconds.
type Job struct {
	Work            float64
	Interval        float64 // work between checkpoints; ≥ Work or 0: none but the final
	Cost            float64
	Restart         float64
	Downtime        float64
	FinalCheckpoint bool
}

// Result of one run.
type Result struct {
	Time        float64 // wall time to completion
	Failures    int
	Checkpoints int // completed
}

// Waste is the fraction of the wall time not spent on useful work.
func (r Result) Waste(work float64) float64 { return 1 - work/r.Time }

// MaxFailures bounds a run: a job that fails this often gives up (its
// Time is +Inf), so hopeless parameters cannot loop for ever.
const MaxFailures = 1_000_000

// Run simulates one execution of j.
func Run(j Job, d Dist, rng *rand.Rand) Result {
	var res Result
	now, saved := 0.0, 0.0
	nextFail := d.Sample(rng)
	// fail moves to the failure, sits out the downtime, draws the next
	// failure, and restarts until a restart completes.
	fail := func() bool {
		for {
			now = nextFail
			res.Failures++
			if res.Failures >= MaxFailures {
				return false
			}
			now += j.Downtime
			nextFail = now + d.Sample(rng)
			if nextFail >= now+j.Restart {
				now += j.Restart
				return true
			}
		}
	}
	for saved < j.Work {
		// One attempt at the next segment: its work, then its checkpoint.
		w := j.Work - saved
		if j.Interval > 0 && j.Interval < w {
			w = j.Interval
		}
		last := saved+w >= j.Work
		c := j.Cost
		if last && !j.FinalCheckpoint {
			c = 0
		}
		if nextFail < now+w+c {
			if !fail() {
				res.Time = math.Inf(1)
				return res
			}
			continue
		}
		now += w + c
		saved += w
		if !last || j.FinalCheckpoint {
			res.Checkpoints++
		}
	}
	res.Time = now
	return res
}

// Stats summarises many runs. The waste is that of the expected time,
// 1 − W/E[T] (Daly's definition), not the mean of each run's 1 − W/T, which
// Jensen's inequality puts below it.
type Stats struct {
	Runs           int     `json:"runs"`
	MeanTime       float64 `json:"mean_time_s"`
	TimeCI         float64 `json:"time_ci_s"` // half-width of the 95 % confidence interval
	MeanWaste      float64 `json:"waste"`     // 1 − W/MeanTime
	WasteCI        float64 `json:"waste_ci"`  // half-width of its 95 % confidence interval
	MeanFailures   float64 `json:"mean_failures"`
	MeanCheckpoint float64 `json:"mean_checkpoints"`
}

// Many runs j n times with a generator seeded by seed.
func Many(j Job, d Dist, n int, seed uint64) Stats {
	rng := rand.New(rand.NewPCG(seed, 0x636b7074))
	var st, st2, sf, sc float64
	for i := 0; i < n; i++ {
		r := Run(j, d, rng)
		st, st2 = st+r.Time, st2+r.Time*r.Time
		sf += float64(r.Failures)
		sc += float64(r.Checkpoints)
	}
	fn := float64(n)
	s := Stats{Runs: n, MeanTime: st / fn, MeanFailures: sf / fn, MeanCheckpoint: sc / fn}
	s.MeanWaste = 1 - j.Work/s.MeanTime
	if n > 1 {
		s.TimeCI = 1.96 * math.Sqrt(math.Max(0, (st2-st*st/fn)/(fn-1))/fn)
		// Delta method: d(1 − W/T)/dT = W/T².
		s.WasteCI = j.Work * s.TimeCI / (s.MeanTime * s.MeanTime)
	}
	return s
}

// ExpectedSegment is the closed form for one segment of length t (work and
// checkpoint) under exponential failures of mean m, with restart r (failures
// may strike) and failure-free downtime dn: e^{r/m}·(m + dn)·(e^{t/m} − 1)
// (Bougeret et al., SC 2011; derived in internal/plan).
func ExpectedSegment(t, m, r, dn float64) float64 {
	return math.Exp(r/m) * (m + dn) * math.Expm1(t/m)
}

// ExpectedTime is the model's expected completion time of j under
// exponential failures of mean m: segments of Interval work and a
// checkpoint, the last one shorter and without a checkpoint (unless
// FinalCheckpoint).
func ExpectedTime(j Job, m float64) float64 {
	iv := j.Interval
	if iv <= 0 || iv > j.Work {
		iv = j.Work
	}
	full := math.Ceil(j.Work/iv-1e-12) - 1 // segments before the last
	lastW := j.Work - full*iv
	lastC := 0.0
	if j.FinalCheckpoint {
		lastC = j.Cost
	}
	return full*ExpectedSegment(iv+j.Cost, m, j.Restart, j.Downtime) + ExpectedSegment(lastW+lastC, m, j.Restart, j.Downtime)
}

// FirstOrderWaste is Young's first-order waste C/τ + (τ/2 + R + D)/M.
func FirstOrderWaste(j Job, m float64) float64 {
	return j.Cost/j.Interval + (j.Interval/2+j.Restart+j.Downtime)/m
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
