package plan

import (
	"math"
	"math/rand/v2"
	"testing"
)

// One segment at a constant rate. λ = 1/3600 s, w = 1800 s, C = 360 s:
// λ(w + C) = 2160/3600 = 0.6, e^0.6 − 1 = 0.8221188.
//
//	R = 0, D = 0:  (1/λ)(e^0.6 − 1) = 3600 · 0.8221188 = 2959.628 s.
//	R = 0, D = 60: (1/λ + D)(e^0.6 − 1) = 3660 · 0.8221188 = 3008.955 s
//	  (Daly's (1/λ + R)(e^{λ(w+C)} − 1) with a failure-free restart of 60 s).
//	R = 360, D = 0: e^{λR} = e^0.1 = 1.1051709, so 1.1051709 · 2959.628 = 3270.895 s
//	  (Bougeret et al.: restarts can fail too).
func TestSegmentClosedForm(t *testing.T) {
	mk := func(r, d float64) *Problem {
		return &Problem{Work: []float64{1800, 1}, Rate: []float64{1.0 / 3600, 1.0 / 3600},
			Ckpt: []float64{360, 0}, Restart: []float64{r, 0}, Downtime: d, State: []float64{0, 0}}
	}
	e06 := math.Exp(0.6) - 1
	for _, c := range []struct{ r, d, want float64 }{
		{0, 0, 3600 * e06}, {0, 60, 3660 * e06}, {360, 0, math.Exp(0.1) * 3600 * e06},
	} {
		got := mk(c.r, c.d).Segment(0, 1, true)
		if math.Abs(got-c.want) > 1e-6 {
			t.Errorf("R=%v D=%v: segment %v, want %v", c.r, c.d, got, c.want)
		}
	}
	if got := mk(0, 0).Segment(0, 1, true); math.Abs(got-2959.628) > 0.001 {
		t.Errorf("hand value: %v", got)
	}
	// Rate 0: the segment takes exactly its length.
	p := mk(5, 5)
	p.Rate = []float64{0, 0}
	if got := p.Segment(0, 1, true); got != 2160 {
		t.Errorf("failure-free segment %v, want 2160", got)
	}
}

// Piecewise rates: two phases at different rates agree with the general
// formula computed by hand. Phase 1: 100 s at 0.001/s; phase 2: 200 s at
// 0.002/s (the checkpoint belongs to stage 2's rate, C = 0 here).
// S(T) = e^{−0.1−0.4} = e^{−0.5}; ∫S = (1−e^{−0.1})/0.001 + e^{−0.1}(1−e^{−0.4})/0.002.
func TestSegmentPiecewise(t *testing.T) {
	p := &Problem{Work: []float64{100, 200}, Rate: []float64{0.001, 0.002}, Ckpt: []float64{0, 0},
		Restart: []float64{0, 0}, State: []float64{0, 0}}
	integral := (1-math.Exp(-0.1))/0.001 + math.Exp(-0.1)*(1-math.Exp(-0.4))/0.002
	want := integral / math.Exp(-0.5)
	if got := p.Segment(0, 2, false); math.Abs(got-want) > 1e-9 {
		t.Fatalf("piecewise segment %v, want %v", got, want)
	}
}

func randomProblem(rng *rand.Rand, n int) *Problem {
	p := &Problem{Downtime: rng.Float64() * 100}
	for i := 0; i < n; i++ {
		p.Work = append(p.Work, 60+rng.Float64()*3600)
		p.Rate = append(p.Rate, rng.Float64()/3600*2)
		p.State = append(p.State, 0)
		p.Ckpt = append(p.Ckpt, rng.Float64()*600)
		p.Restart = append(p.Restart, rng.Float64()*300)
	}
	return p
}

// TestOptimalMatchesBruteForce: on small random pipelines the dynamic
// program finds the least expected time of all 2^(n−1) checkpoint sets.
func TestOptimalMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := 0; trial < 300; trial++ {
		n := 1 + rng.IntN(10)
		p := randomProblem(rng, n)
		got, err := p.Optimal()
		if err != nil {
			t.Fatal(err)
		}
		bestV, bestSet := math.Inf(1), -1
		after := make([]bool, n)
		for set := 0; set < 1<<(n-1); set++ {
			for i := 0; i < n-1; i++ {
				after[i] = set&(1<<i) != 0
			}
			if v := p.Expected(after); v < bestV {
				bestV, bestSet = v, set
			}
		}
		if math.Abs(got.Expected-bestV) > 1e-9*bestV {
			t.Fatalf("trial %d (n=%d): DP %v, brute force %v (set %b)", trial, n, got.Expected, bestV, bestSet)
		}
		if v := p.Expected(got.After); math.Abs(v-got.Expected) > 1e-9*v {
			t.Fatalf("trial %d: the DP's plan costs %v, it claims %v", trial, v, got.Expected)
		}
	}
}

func TestOptimalExtremes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	p := randomProblem(rng, 6)
	for i := range p.Rate {
		p.Rate[i] = 0
	}
	pl, _ := p.Optimal()
	for i, a := range pl.After {
		if a {
			t.Fatalf("without failures no checkpoint pays, but the plan has one after stage %d", i+1)
		}
	}
	if pl.Expected != p.FailureFree() {
		t.Fatalf("failure-free expected %v, want %v", pl.Expected, p.FailureFree())
	}
	for i := range p.Rate {
		p.Rate[i], p.Ckpt[i] = 1.0/600, 1
	}
	pl, _ = p.Optimal()
	for i, a := range pl.After[:len(pl.After)-1] {
		if !a {
			t.Fatalf("with failures every 10 min and 1 s checkpoints every boundary pays, not after stage %d", i+1)
		}
	}
}

func TestSpecChainAndDAG(t *testing.T) {
	chain := `{"mtbf": "6h", "bandwidth": "1GiB/s", "latency": "2s", "input": "2GiB", "downtime": "1m",
	  "stages": [{"name": "a", "duration": "1h", "state": "10GiB"},
	             {"name": "b", "duration": "30m", "state": "1GiB", "failure_rate": 0.5}]}`
	s, err := Parse([]byte(chain))
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Problem()
	if err != nil {
		t.Fatal(err)
	}
	if p.Ckpt[0] != 12 || p.Restart[0] != 4 || p.Restart[1] != 12 || p.Downtime != 60 {
		t.Fatalf("chain costs: ckpt %v restart %v", p.Ckpt, p.Restart)
	}
	if p.Rate[0] != 1.0/(6*3600) || p.Rate[1] != 0.5/3600 {
		t.Fatalf("rates %v", p.Rate)
	}
	// Diamond a → b, a → c, (b, c) → d; written out of order.
	dag := `{"failure_rate": 0.1, "bandwidth": "1MB/s", "stages": [
	  {"name": "d", "duration": "1m", "after": ["b", "c"], "output": "4MB"},
	  {"name": "a", "duration": "1m", "output": "1MB"},
	  {"name": "b", "duration": "1m", "after": ["a"], "output": "2MB"},
	  {"name": "c", "duration": "1m", "after": ["a"], "output": "3MB"}]}`
	if s, err = Parse([]byte(dag)); err != nil {
		t.Fatal(err)
	}
	if p, err = s.Problem(); err != nil {
		t.Fatal(err)
	}
	wantNames, wantState := []string{"a", "b", "c", "d"}, []float64{1e6, 3e6, 5e6, 4e6}
	for i := range wantNames {
		if p.Names[i] != wantNames[i] || p.State[i] != wantState[i] {
			t.Fatalf("DAG order %v state %v, want %v %v", p.Names, p.State, wantNames, wantState)
		}
	}
	for _, bad := range []string{
		`{"bandwidth": "1MB/s", "stages": [{"name": "a", "duration": "1m"}]}`,                               // no failure rate
		`{"mtbf": "1h", "stages": [{"name": "a", "duration": "1m"}]}`,                                       // no bandwidth
		`{"mtbf": "1h", "bandwidth": "fast", "stages": [{"name": "a", "duration": "1m"}]}`,                  // bad bandwidth
		`{"mtbf": "1h", "bandwidth": "1MB/s", "stages": [{"name": "a", "duration": "soon"}]}`,               // bad duration
		`{"mtbf": "1h", "bandwidth": "1MB/s", "stages": [{"name": "a", "duration": "1m", "after": ["a"]}]}`, // cycle
		`{"mtbf": "1h", "bandwidth": "1MB/s", "stages": [{"name": "a", "duration": "1m", "after": ["z"]}]}`,
		`{"mtbf": "1h", "bandwidth": "1MB/s", "stages": [{"name": "a", "duration": "1m", "state": "1XB"}]}`,
		`{"mtbf": "1h", "bandwidth": "1MB/s", "stages": [], "extra": 1}`,
	} {
		s, err := Parse([]byte(bad))
		if err == nil {
			_, err = s.Problem()
		}
		if err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]float64{"4096": 4096, "8GiB": 8 << 30, "500 MB": 5e8, "1.5T": 1.5e12, "2kib": 2048} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "3 parsecs"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}
