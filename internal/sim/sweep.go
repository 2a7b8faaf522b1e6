package sim

import (
	"math"
	"sort"
)

// Point is the simulated waste at one interval.
type Point struct {
	Interval float64 `json:"interval_s"`
	Stats
	// Predicted is the exponential model's waste 1 − W/E[T] (ExpectedTime),
	// for exponential failures only; 0 otherwise.
	Predicted float64 `json:"predicted_waste,omitempty"`
	Mark      string  `json:"mark,omitempty"` // "young", "daly" or ""
}

// Curve is a sweep of intervals under one failure law.
type Curve struct {
	Dist   string  `json:"dist"`
	Points []Point `json:"points"`
}

// Sweep simulates j at each interval (j.Interval is ignored) with runs
// runs each. Every interval uses the same seed (common random numbers), so
// neighbouring points differ by the interval, not by the luck of the draw.
func Sweep(j Job, d Dist, intervals []float64, marks map[float64]string, runs int, seed uint64) Curve {
	c := Curve{Dist: d.String()}
	_, exp := d.(Exponential)
	for _, iv := range intervals {
		jj := j
		jj.Interval = iv
		p := Point{Interval: iv, Stats: Many(jj, d, runs, seed), Mark: marks[iv]}
		if exp {
			p.Predicted = 1 - j.Work/ExpectedTime(jj, d.Mean())
		}
		c.Points = append(c.Points, p)
	}
	return c
}

// Intervals returns n intervals spaced evenly in log scale from lo to hi,
// with the extra ones merged in, sorted.
func Intervals(lo, hi float64, n int, extra ...float64) []float64 {
	var out []float64
	for i := 0; i < n; i++ {
		out = append(out, lo*math.Pow(hi/lo, float64(i)/float64(max(n-1, 1))))
	}
	out = append(out, extra...)
	sort.Float64s(out)
	return out
}

// Min is the point of least mean waste.
func (c Curve) Min() Point {
	best := c.Points[0]
	for _, p := range c.Points[1:] {
		if p.MeanWaste < best.MeanWaste {
			best = p
		}
	}
	return best
}

// At is the point marked mark.
func (c Curve) At(mark string) (Point, bool) {
	for _, p := range c.Points {
		if p.Mark == mark {
			return p, true
		}
	}
	return Point{}, false
}
