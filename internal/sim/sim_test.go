package sim

import (
	"bytes"
	"encoding/xml"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/policy"
)

func secsDur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// TestSegmentMatchesClosedForm: the simulated time of one segment (work w
// then its checkpoint C, failures during work, checkpoint and restart)
// matches e^{R/M}(M + D)(e^{(w+C)/M} − 1) under exponential failures.
func TestSegmentMatchesClosedForm(t *testing.T) {
	for _, c := range []struct{ w, cost, r, d, m float64 }{
		{1800, 360, 0, 0, 3600},     // (1/λ)(e^0.6 − 1) = 2959.6 s
		{1800, 360, 0, 60, 3600},    // Daly's form with a failure-free restart
		{3000, 600, 600, 120, 3600}, // restarts that can fail
	} {
		j := Job{Work: c.w, Interval: c.w, Cost: c.cost, Restart: c.r, Downtime: c.d, FinalCheckpoint: true}
		s := Many(j, Exponential{c.m}, 40000, 42)
		want := ExpectedSegment(c.w+c.cost, c.m, c.r, c.d)
		if math.Abs(s.MeanTime-want) > 3*s.TimeCI/1.96*1.5 || math.Abs(s.MeanTime-want) > 0.02*want {
			t.Errorf("%+v: simulated %.1f ± %.1f s, closed form %.1f s", c, s.MeanTime, s.TimeCI, want)
		}
		if s.MeanFailures <= 0 {
			t.Errorf("%+v: no failures simulated", c)
		}
	}
}

// TestWasteAtDalyNearMinimum: the simulated waste at Daly's interval is
// within a small margin of the least simulated waste over a sweep of
// intervals from a quarter to four times Young's (the curve is flat near
// its optimum, so waste is compared, not where the minimum lies).
func TestWasteAtDalyNearMinimum(t *testing.T) {
	for _, c := range []struct {
		cost, m float64
		d       Dist
	}{
		{300, 6 * 3600, Exponential{6 * 3600}},
		{60, 3600, Exponential{3600}},
		{300, 6 * 3600, Weibull{6 * 3600, 0.7}},
	} {
		j := Job{Work: 100 * 3600, Cost: c.cost, Restart: c.cost}
		y := policy.Young(secsDur(c.cost), secsDur(c.m)).Seconds()
		da := policy.Daly(secsDur(c.cost), secsDur(c.m)).Seconds()
		curve := Sweep(j, c.d, Intervals(y/4, y*4, 17, da), map[float64]string{da: "daly"}, 600, 1)
		at, ok := curve.At("daly")
		if !ok {
			t.Fatal("no Daly point")
		}
		lo := curve.Min()
		if at.MeanWaste-lo.MeanWaste > 0.005 {
			t.Errorf("C=%v M=%v %s: waste at Daly (%.0fs) %.4f, minimum %.4f at %.0fs", c.cost, c.m, c.d, da, at.MeanWaste, lo.MeanWaste, lo.Interval)
		}
		// And the curve is not flat everywhere: the ends are clearly worse.
		if first, last := curve.Points[0], curve.Points[len(curve.Points)-1]; first.MeanWaste < at.MeanWaste+0.01 || last.MeanWaste < at.MeanWaste+0.01 {
			t.Errorf("%s: sweep ends %.4f, %.4f not clearly above Daly's %.4f", c.d, first.MeanWaste, last.MeanWaste, at.MeanWaste)
		}
		// For exponential failures the simulation agrees with the model.
		if at.Predicted > 0 && math.Abs(at.MeanWaste-at.Predicted) > 2*at.WasteCI+0.002 {
			t.Errorf("%s: simulated waste %.4f ± %.4f, predicted %.4f", c.d, at.MeanWaste, at.WasteCI, at.Predicted)
		}
	}
}

func TestWeibullMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, k := range []float64{0.5, 0.7, 1, 2} {
		d := Weibull{1000, k}
		sum := 0.0
		const n = 200000
		for i := 0; i < n; i++ {
			sum += d.Sample(rng)
		}
		if mean := sum / n; math.Abs(mean-1000) > 20 {
			t.Errorf("Weibull k=%v: sample mean %.1f, want 1000", k, mean)
		}
	}
}

// TestFailuresDuringCheckpoint: a checkpoint that a failure interrupts does
// not count: with a checkpoint twice as long as the MTBF the job rarely
// completes it, and the simulated time follows the model, not the
// checkpoint-proof alternative.
func TestFailuresDuringCheckpoint(t *testing.T) {
	j := Job{Work: 20, Interval: 10, Cost: 100}
	s := Many(j, Exponential{50}, 2000, 9)
	want := ExpectedTime(j, 50)
	if math.Abs(s.MeanTime-want) > 0.05*want {
		t.Fatalf("simulated %.1f, model %.1f", s.MeanTime, want)
	}
	// Were failures during the checkpoint ignored, two pieces of work of
	// 10 s at M = 50 s and one checkpoint would take about 2·50(e^0.2 − 1)
	// + 100 ≈ 122 s; the model says 50(e^2.2 − 1) + 50(e^0.2 − 1) ≈ 412 s.
	if s.MeanTime < 3*(j.Work+j.Cost) {
		t.Fatalf("failures during checkpoints seem not to count: %.1f", s.MeanTime)
	}
}

func TestSVG(t *testing.T) {
	j := Job{Work: 10 * 3600, Cost: 60, Restart: 60}
	c := Sweep(j, Exponential{3600}, Intervals(100, 3000, 9, 340), map[float64]string{340: "daly"}, 50, 1)
	var b bytes.Buffer
	if err := WriteSVG(&b, []Curve{c}, PlotOptions{Title: "t <&>", Young: 346, Daly: 340}); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b.Bytes(), new(struct{})); err != nil {
		t.Fatalf("not well-formed XML: %v", err)
	}
	for _, s := range []string{"Young 5m46s", "Daly 5m40s", `text-anchor="end">Daly`, "<polyline", "t &lt;&amp;&gt;"} {
		if !bytes.Contains(b.Bytes(), []byte(s)) {
			t.Errorf("SVG lacks %q", s)
		}
	}
}
