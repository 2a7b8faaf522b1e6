// Package plan chooses where to checkpoint a pipeline of stages: the set
// of stage boundaries at which to checkpoint that minimises the expected
// completion time under exponential failures (the checkpoint selection
// problem of Toueg and Babaoğlu, "On the optimum checkpoint selection
// problem", SIAM J. Computing 13(3), 1984), solved by dynamic programming
// over the boundaries. A DAG is run in a topological order; the state live
// at a boundary is then the outputs still needed by later stages, plus the
// final outputs.
//
// # Cost of a segment
//
// A segment is the work between two checkpoints: stages j+1..i, then the
// checkpoint after stage i (none after the last stage). Failures strike at
// rate λ_k while stage k runs and while its checkpoint is written; after a
// failure the job waits a failure-free downtime D (requeue, reboot) and
// reads checkpoint j back in R_j, during which failures strike at rate
// λ_{j+1}; then it runs the segment again from its start.
//
// Let S(t) be the probability that no failure strikes in the first t
// seconds of an attempt (S(t) = e^{−Λ(t)}, Λ the cumulative hazard) and T
// the segment's length. An attempt succeeds with probability S(T); the
// number of failed attempts is geometric with mean (1 − S(T))/S(T); a
// failed attempt lasts E[X | X < T] = (∫₀ᵀ S(t) dt − T·S(T))/(1 − S(T)) and
// is followed by a recovery lasting E_rec on average. So
//
//	E(T) = T + (1−S)/S·(E[X|X<T] + E_rec) = ∫₀ᵀ S(t) dt / S(T) + (1/S(T) − 1)·E_rec.
//
// The recovery is itself such a phase, of length R with penalty D per
// failure, preceded by D: E_rec = D + ∫₀ᴿ e^{−λt}dt·e^{λR} + (e^{λR} − 1)·D
// = e^{λR}·D + (e^{λR} − 1)/λ.
//
// With one rate λ, ∫₀ᵀ S = (1 − e^{−λT})/λ and the segment costs
// (e^{λT} − 1)·e^{λR}·(1/λ + D), Bougeret et al.'s formula ("Checkpointing
// strategies for parallel jobs", SC 2011); with R = 0 it is the familiar
// (1/λ + D)(e^{λ(w+C)} − 1) (Daly 2006, with restart D).
//
// Failures after a committed checkpoint never reach back before it, and
// exponential failures have no memory, so the expected completion time is
// the sum of the segments' expected times: the best plan ending with a
// checkpoint after stage i is the best plan ending at some j < i plus the
// segment j→i, a dynamic program over O(n²) segments.
package plan

import (
	"errors"
	"fmt"
	"math"
)

// Problem is a pipeline in seconds and bytes, ready to plan.
type Problem struct {
	Names []string  // stage names, in execution order
	Work  []float64 // seconds of work of each stage
	Rate  []float64 // failures per second while the stage runs (and writes its checkpoint)
	State []float64 // bytes live after each stage
	Ckpt  []float64 // seconds to checkpoint after each stage
	// Restart[j] is the seconds to read back the checkpoint after stage j
	// (Restart[0]: the pipeline's input, before stage 1); len n.
	Restart  []float64
	Downtime float64 // failure-free seconds lost per failure
}

// N is the number of stages.
func (p *Problem) N() int { return len(p.Work) }

// phase folds a phase of length l at rate λ into the running survival s
// and the running integral of the survival.
func phase(s, integral, l, rate float64) (float64, float64) {
	if l <= 0 {
		return s, integral
	}
	if rate <= 0 {
		return s, integral + s*l
	}
	e := math.Exp(-rate * l)
	return s * e, integral + s*(1-e)/rate
}

// recovery is E_rec: downtime, then restart R at rate λ, again after each
// failure.
func recovery(r, rate, down float64) float64 {
	if rate <= 0 || r <= 0 {
		return down + r
	}
	e := math.Exp(rate * r)
	return e*down + (e-1)/rate
}

// Segment is the expected time from checkpoint j (0: the start) to the
// end of stage i (1-based) and, when ckpt, its checkpoint.
func (p *Problem) Segment(j, i int, ckpt bool) float64 {
	s, integral := 1.0, 0.0
	for k := j; k < i; k++ {
		s, integral = phase(s, integral, p.Work[k], p.Rate[k])
	}
	if ckpt {
		s, integral = phase(s, integral, p.Ckpt[i-1], p.Rate[i-1])
	}
	if s == 0 {
		return math.Inf(1)
	}
	rec := recovery(p.Restart[j], p.Rate[j], p.Downtime)
	return integral/s + (1/s-1)*rec
}

// Expected is the expected completion time when checkpointing after the
// stages marked in after (len n; after[n-1] is ignored: the pipeline ends
// there).
func (p *Problem) Expected(after []bool) float64 {
	n, total, j := p.N(), 0.0, 0
	for i := 1; i <= n; i++ {
		if i == n || after[i-1] {
			total += p.Segment(j, i, i < n)
			j = i
		}
	}
	return total
}

// Plan is a chosen set of checkpoints.
type Plan struct {
	After    []bool  // checkpoint after stage i (never after the last)
	Expected float64 // expected completion time, seconds
}

// Optimal returns the plan of least expected completion time.
func (p *Problem) Optimal() (Plan, error) {
	n := p.N()
	if n == 0 {
		return Plan{}, errors.New("plan: no stages")
	}
	best := make([]float64, n+1) // best[i]: ends with a checkpoint after i (or the end)
	from := make([]int, n+1)
	for i := 1; i <= n; i++ {
		best[i] = math.Inf(1)
		for j := 0; j < i; j++ {
			if v := best[j] + p.Segment(j, i, i < n); v < best[i] {
				best[i], from[i] = v, j
			}
		}
	}
	after := make([]bool, n)
	for i := from[n]; i > 0; i = from[i] {
		after[i-1] = true
	}
	if math.IsInf(best[n], 1) {
		return Plan{after, best[n]}, fmt.Errorf("plan: the expected time is infinite (failures far more frequent than stages can finish)")
	}
	return Plan{after, best[n]}, nil
}

// FailureFree is the time without failures and without checkpoints.
func (p *Problem) FailureFree() float64 {
	t := 0.0
	for _, w := range p.Work {
		t += w
	}
	return t
}
