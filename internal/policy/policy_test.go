package policy

import (
	"math"
	"testing"
	"time"
)

func near(t *testing.T, what string, got time.Duration, wantSec float64) {
	t.Helper()
	if math.Abs(got.Seconds()-wantSec) > 1e-6*math.Max(1, wantSec) {
		t.Errorf("%s = %.6fs, want %.6fs", what, got.Seconds(), wantSec)
	}
}

// Young's interval. The first-order waste per unit of time is
// W(τ) = C/τ + τ/(2M) (one checkpoint of cost C per interval τ, and on
// average half an interval of work lost per failure, one failure per M);
// W'(τ) = −C/τ² + 1/(2M) = 0 gives τ = √(2CM).
//
//	C = 300 s, M = 6 h = 21600 s: 2CM = 2·300·21600 = 12 960 000 = 3600², τ = 3600 s.
//	C = 18 s,  M = 1 h = 3600 s:  2CM = 129 600 = 360², τ = 360 s.
//	C = 1 s,   M = 2 s:           2CM = 4, τ = 2 s.
func TestYoung(t *testing.T) {
	near(t, "Young(5m, 6h)", Young(5*time.Minute, 6*time.Hour), 3600)
	near(t, "Young(18s, 1h)", Young(18*time.Second, time.Hour), 360)
	near(t, "Young(1s, 2s)", Young(time.Second, 2*time.Second), 2)
	if Young(0, time.Hour) != 0 || Young(time.Second, 0) != 0 {
		t.Error("Young of a zero cost or MTBF should be 0")
	}
	// τ minimises the first-order waste: a few percent either side is worse.
	c, m := 300.0, 21600.0
	w := func(tau float64) float64 { return c/tau + tau/(2*m) }
	tau := Young(5*time.Minute, 6*time.Hour).Seconds()
	if !(w(tau) < w(tau*0.95) && w(tau) < w(tau*1.05)) {
		t.Errorf("Young's τ=%v does not minimise C/τ + τ/2M", tau)
	}
}

// Daly (2006), eq. 37: for C < 2M,
// τ = √(2CM)·[1 + ⅓·√(C/2M) + ⅑·(C/2M)] − C, else τ = M.
//
//	C = 300 s, M = 21600 s: C/2M = 300/43200 = 1/144, √ = 1/12;
//	  bracket = 1 + 1/36 + 1/1296 = 1333/1296;
//	  τ = 3600·1333/1296 − 300 = 33325/9 − 300 = 3402.777… s.
//	C = 18 s, M = 3600 s: C/2M = 1/400, √ = 1/20;
//	  bracket = 1 + 1/60 + 1/3600 = 3661/3600;
//	  τ = 360·3661/3600 − 18 = 366.1 − 18 = 348.1 s.
//	C = 1 s, M = 2 s: C/2M = 1/4, √ = 1/2; bracket = 1 + 1/6 + 1/36 = 43/36;
//	  τ = 2·43/36 − 1 = 50/36 = 1.3888… s.
//	C = 600 s, M = 240 s: C ≥ 2M, so τ = M = 240 s.
func TestDaly(t *testing.T) {
	near(t, "Daly(5m, 6h)", Daly(5*time.Minute, 6*time.Hour), 33325.0/9-300)
	near(t, "Daly(18s, 1h)", Daly(18*time.Second, time.Hour), 348.1)
	near(t, "Daly(1s, 2s)", Daly(time.Second, 2*time.Second), 50.0/36)
	near(t, "Daly(10m, 4m)", Daly(10*time.Minute, 4*time.Minute), 240)
	// For C ≪ M Daly's estimate approaches Young's less C.
	y, d := Young(time.Second, 1000*time.Hour), Daly(time.Second, 1000*time.Hour)
	if diff := (y - time.Second - d).Seconds(); math.Abs(diff) > 0.01*y.Seconds() {
		t.Errorf("Daly(1s, 1000h) = %v, Young = %v: should differ by about C", d, y)
	}
}

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		mode Mode
		d    time.Duration
		bad  bool
	}{
		{"", ModeOff, 0, false}, {"0", ModeOff, 0, false}, {"10m", ModeFixed, 10 * time.Minute, false},
		{"auto", ModeDaly, 0, false}, {"daly", ModeDaly, 0, false}, {"Young", ModeYoung, 0, false},
		{"-1s", ModeOff, 0, true}, {"often", ModeOff, 0, true},
	} {
		m, d, err := ParseMode(c.in)
		if (err != nil) != c.bad || m != c.mode || d != c.d {
			t.Errorf("ParseMode(%q) = %v, %v, %v", c.in, m, d, err)
		}
	}
}

func TestMovingCost(t *testing.T) {
	p := Policy{Mode: ModeDaly, Alpha: 0.5, MTBF: 6 * time.Hour}
	if p.Cost() != DefaultCost {
		t.Fatalf("cost before measurements = %v, want %v", p.Cost(), DefaultCost)
	}
	p.ObserveCost(10 * time.Second) // first measurement taken as is
	p.ObserveCost(20 * time.Second) // 0.5·20 + 0.5·10 = 15
	if p.Cost() != 15*time.Second {
		t.Fatalf("cost = %v, want 15s", p.Cost())
	}
	p.ObserveCost(40 * time.Second) // 0.5·40 + 0.5·15 = 27.5
	if p.Cost() != 27500*time.Millisecond || p.WorstCost() != 40*time.Second {
		t.Fatalf("cost = %v worst %v, want 27.5s and 40s", p.Cost(), p.WorstCost())
	}
	// The interval follows the estimate: cost 300 s, M = 6 h → Daly's 3402.78 s.
	p = Policy{Mode: ModeDaly, MTBF: 6 * time.Hour}
	p.ObserveCost(5 * time.Minute)
	near(t, "auto interval", p.Interval(), 33325.0/9-300)
	p.Mode = ModeYoung
	near(t, "young interval", p.Interval(), 3600)
}

func TestMTBFFromHistory(t *testing.T) {
	p := Policy{Mode: ModeDaly}
	if p.M() != DefaultMTBF {
		t.Fatalf("M without history = %v, want the prior %v", p.M(), DefaultMTBF)
	}
	// 4 failures in 10 h: (10 h + 24 h)/(4 + 1) = 6.8 h.
	p.SetHistory(10*time.Hour, 4)
	if p.M() != 6*time.Hour+48*time.Minute {
		t.Fatalf("M = %v, want 6h48m", p.M())
	}
	// 100 failures in 100 h: (124 h)/101 ≈ 1.228 h, close to 1 h per failure.
	p.SetHistory(100*time.Hour, 100)
	if m := p.M().Hours(); math.Abs(m-124.0/101) > 1e-9 {
		t.Fatalf("M = %vh", m)
	}
	shorter := p.Interval()
	p.SetHistory(100*time.Hour, 10)
	if p.Interval() <= shorter {
		t.Fatal("fewer failures should lengthen the interval")
	}
	// Configuration wins over history.
	p.MTBF = 6 * time.Hour
	if p.M() != 6*time.Hour {
		t.Fatalf("configured M ignored: %v", p.M())
	}
}

func TestClamp(t *testing.T) {
	p := Policy{Mode: ModeDaly, MTBF: time.Second}
	p.ObserveCost(time.Microsecond)
	if p.Interval() != MinInterval {
		t.Fatalf("interval %v, want the minimum %v", p.Interval(), MinInterval)
	}
	p = Policy{Mode: ModeYoung, MTBF: 1000 * time.Hour, Max: time.Minute}
	if p.Interval() != time.Minute {
		t.Fatalf("interval %v, want the maximum 1m", p.Interval())
	}
	if (&Policy{}).Interval() != 0 {
		t.Fatal("the zero Policy should not checkpoint")
	}
	if (&Policy{Mode: ModeFixed, Every: time.Hour}).Interval() != time.Hour {
		t.Fatal("fixed interval changed")
	}
}

func TestDeadline(t *testing.T) {
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	d, err := ParseDeadline("2026-11-24T18:00:00Z", now)
	if err != nil || !d.Equal(now.Add(9*time.Hour)) {
		t.Fatalf("RFC 3339 deadline: %v %v", d, err)
	}
	d, err = ParseDeadline("1h30m", now)
	if err != nil || !d.Equal(now.Add(90*time.Minute)) {
		t.Fatalf("duration deadline: %v %v", d, err)
	}
	if _, err := ParseDeadline("tomorrow", now); err == nil {
		t.Fatal("nonsense deadline accepted")
	}
	env := map[string]string{EnvDeadline: "1795543200"}
	d, ok, err := DeadlineFromEnv(func(k string) string { return env[k] })
	if err != nil || !ok || d.Unix() != 1795543200 {
		t.Fatalf("env deadline: %v %v %v", d, ok, err)
	}
	env[EnvDeadline] = "0"
	if _, ok, err := DeadlineFromEnv(func(k string) string { return env[k] }); ok || err != nil {
		t.Fatal("SLURM_JOB_END_TIME=0 means no limit")
	}
	env[EnvDeadline] = "soon"
	if _, _, err := DeadlineFromEnv(func(k string) string { return env[k] }); err == nil {
		t.Fatal("bad SLURM_JOB_END_TIME accepted")
	}
	if got := StopAt(now, 30*time.Second, time.Minute); !got.Equal(now.Add(-90 * time.Second)) {
		t.Fatalf("StopAt = %v", got)
	}
}
