package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Spec is the JSON file `ckpt plan` reads (docs/CLI.md). Durations are Go
// durations ("20m", "1h30m"); sizes are bytes or numbers with a unit (B, kB,
// MB, GB, TB, KiB, MiB, GiB, TiB); bandwidths are sizes per second
// ("500MiB/s"); failure rates are failures per hour.
type Spec struct {
	MTBF          string      `json:"mtbf,omitempty"`         // mean time between failures
	FailureRate   float64     `json:"failure_rate,omitempty"` // or failures per hour
	Bandwidth     string      `json:"bandwidth"`              // checkpoint write bandwidth
	ReadBandwidth string      `json:"read_bandwidth,omitempty"`
	Latency       string      `json:"latency,omitempty"`  // fixed cost of a checkpoint
	Downtime      string      `json:"downtime,omitempty"` // failure-free time lost per failure
	Input         string      `json:"input,omitempty"`    // size read to restart from the beginning
	Stages        []StageSpec `json:"stages"`
}

// StageSpec is one stage. In a chain (no stage has "after") "state" is the
// size live after the stage; in a DAG each stage names the stages it needs
// in "after" and the size of its "output".
type StageSpec struct {
	Name        string   `json:"name"`
	Duration    string   `json:"duration"`
	State       string   `json:"state,omitempty"`
	After       []string `json:"after,omitempty"`
	Output      string   `json:"output,omitempty"`
	MTBF        string   `json:"mtbf,omitempty"`
	FailureRate float64  `json:"failure_rate,omitempty"`
	Bandwidth   string   `json:"bandwidth,omitempty"`
}

// Parse reads a Spec, refusing unknown fields.
func Parse(b []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ParseSize parses "8GiB", "500 MB", "1.5T", "4096".
func ParseSize(s string) (float64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != 'e' && r != '+' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), strings.TrimSpace(t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (8GiB, 500MB)", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	return v * mult, nil
}

func parseBandwidth(s string) (float64, error) {
	t, _ := strings.CutSuffix(strings.TrimSpace(s), "/s")
	v, err := ParseSize(t)
	if err != nil {
		return 0, fmt.Errorf("bandwidth %q: want a size per second (500MiB/s)", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("bandwidth %q must be positive", s)
	}
	return v, nil
}

func parseDur(what, s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q: want a duration (20m, 1h30m)", what, s)
	}
	return d.Seconds(), nil
}

// rate is failures per second from an MTBF or a rate per hour; def when
// neither is set.
func rate(mtbf string, perHour, def float64) (float64, error) {
	switch {
	case mtbf != "" && perHour != 0:
		return 0, fmt.Errorf("give mtbf or failure_rate, not both")
	case mtbf != "":
		m, err := parseDur("mtbf", mtbf)
		if err != nil || m <= 0 {
			return 0, fmt.Errorf("mtbf %q: want a positive duration", mtbf)
		}
		return 1 / m, nil
	case perHour < 0:
		return 0, fmt.Errorf("failure_rate %v is negative", perHour)
	case perHour > 0:
		return perHour / 3600, nil
	}
	return def, nil
}

// Problem checks the spec and converts it.
func (s *Spec) Problem() (*Problem, error) {
	n := len(s.Stages)
	if n == 0 {
		return nil, fmt.Errorf("no stages")
	}
	lam, err := rate(s.MTBF, s.FailureRate, 0)
	if err != nil {
		return nil, err
	}
	if s.Bandwidth == "" {
		return nil, fmt.Errorf("bandwidth is required")
	}
	bw, err := parseBandwidth(s.Bandwidth)
	if err != nil {
		return nil, err
	}
	rbw := bw
	if s.ReadBandwidth != "" {
		if rbw, err = parseBandwidth(s.ReadBandwidth); err != nil {
			return nil, err
		}
	}
	lat, err := parseDur("latency", s.Latency)
	if err != nil {
		return nil, err
	}
	down, err := parseDur("downtime", s.Downtime)
	if err != nil {
		return nil, err
	}
	input := 0.0
	if s.Input != "" {
		if input, err = ParseSize(s.Input); err != nil {
			return nil, err
		}
	}
	order, live, err := s.order()
	if err != nil {
		return nil, err
	}
	p := &Problem{Downtime: down, Restart: make([]float64, n)}
	p.Restart[0] = lat + input/rbw
	for pos, idx := range order {
		st := s.Stages[idx]
		w, err := parseDur("stage "+st.Name+" duration", st.Duration)
		if err != nil {
			return nil, err
		}
		if w <= 0 {
			return nil, fmt.Errorf("stage %q: duration is required", st.Name)
		}
		r, err := rate(st.MTBF, st.FailureRate, lam)
		if err != nil {
			return nil, fmt.Errorf("stage %q: %w", st.Name, err)
		}
		sbw := bw
		if st.Bandwidth != "" {
			if sbw, err = parseBandwidth(st.Bandwidth); err != nil {
				return nil, fmt.Errorf("stage %q: %w", st.Name, err)
			}
		}
		p.Names = append(p.Names, st.Name)
		p.Work = append(p.Work, w)
		p.Rate = append(p.Rate, r)
		p.State = append(p.State, live[pos])
		p.Ckpt = append(p.Ckpt, lat+live[pos]/sbw)
		if pos+1 < n {
			p.Restart[pos+1] = lat + live[pos]/rbw
		}
	}
	for i, r := range p.Rate {
		if r == 0 && lam == 0 {
			return nil, fmt.Errorf("stage %q: no failure rate (set mtbf or failure_rate)", p.Names[i])
		}
	}
	return p, nil
}

// order returns the stages' execution order (indexes into Stages) and the
// bytes live after each position.
func (s *Spec) order() ([]int, []float64, error) {
	n := len(s.Stages)
	index := map[string]int{}
	dag := false
	for i, st := range s.Stages {
		if st.Name == "" {
			return nil, nil, fmt.Errorf("stage %d has no name", i+1)
		}
		if _, dup := index[st.Name]; dup {
			return nil, nil, fmt.Errorf("stage %q appears twice", st.Name)
		}
		index[st.Name] = i
		dag = dag || len(st.After) > 0
	}
	if !dag {
		order, live := make([]int, n), make([]float64, n)
		for i, st := range s.Stages {
			if st.Output != "" {
				return nil, nil, fmt.Errorf("stage %q: output is for DAGs (stages with after); a chain gives state", st.Name)
			}
			v, err := ParseSize(st.State)
			if st.State == "" {
				v, err = 0, nil
			}
			if err != nil {
				return nil, nil, fmt.Errorf("stage %q: %w", st.Name, err)
			}
			order[i], live[i] = i, v
		}
		return order, live, nil
	}
	out := make([]float64, n)
	consumers := make([][]int, n)
	indeg := make([]int, n)
	for i, st := range s.Stages {
		if st.State != "" {
			return nil, nil, fmt.Errorf("stage %q: in a DAG give output, not state", st.Name)
		}
		if st.Output != "" {
			v, err := ParseSize(st.Output)
			if err != nil {
				return nil, nil, fmt.Errorf("stage %q: %w", st.Name, err)
			}
			out[i] = v
		}
		for _, a := range st.After {
			j, ok := index[a]
			if !ok {
				return nil, nil, fmt.Errorf("stage %q: after %q: no such stage", st.Name, a)
			}
			consumers[j] = append(consumers[j], i)
			indeg[i]++
		}
	}
	// Kahn's algorithm, taking the first ready stage in file order: a file
	// already in topological order is run as written.
	done := make([]bool, n)
	var order []int
	for len(order) < n {
		next := -1
		for i := 0; i < n; i++ {
			if !done[i] && indeg[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			return nil, nil, fmt.Errorf("the stages' after lists form a cycle")
		}
		done[next] = true
		order = append(order, next)
		for _, c := range consumers[next] {
			indeg[c]--
		}
	}
	// Live after position k: outputs of finished stages that a later
	// stage still needs, and final outputs (no consumers).
	pos := make([]int, n)
	for k, i := range order {
		pos[i] = k
	}
	live := make([]float64, n)
	for i := 0; i < n; i++ {
		last := n // a final output lives to the end
		if len(consumers[i]) > 0 {
			last = 0
			for _, c := range consumers[i] {
				last = max(last, pos[c])
			}
		}
		// Live after positions pos[i] .. last−1.
		for k := pos[i]; k < last && k < n; k++ {
			live[k] += out[i]
		}
	}
	return order, live, nil
}
