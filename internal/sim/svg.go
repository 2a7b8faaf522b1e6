package sim

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// PlotOptions label a plot.
type PlotOptions struct {
	Title         string
	Young, Daly   float64 // intervals to mark with vertical lines (0: none)
	Width, Height int     // pixels (0: 860×520)
}

var curveColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

// WriteSVG plots the curves' mean waste (with 95 % confidence bars) against
// the interval on a log scale, and the predicted waste of exponential
// curves as a dashed line.
func WriteSVG(w io.Writer, curves []Curve, o PlotOptions) error {
	W, H := o.Width, o.Height
	if W == 0 {
		W, H = 860, 520
	}
	const ml, mr, mt, mb = 78, 24, 56, 64
	pw, ph := float64(W-ml-mr), float64(H-mt-mb)
	xmin, xmax, ymax := math.Inf(1), 0.0, 0.0
	for _, c := range curves {
		for _, p := range c.Points {
			xmin, xmax = math.Min(xmin, p.Interval), math.Max(xmax, p.Interval)
			ymax = math.Max(ymax, p.MeanWaste+p.WasteCI)
			ymax = math.Max(ymax, p.Predicted)
		}
	}
	if len(curves) == 0 || xmax <= xmin {
		return fmt.Errorf("plot: nothing to plot")
	}
	ymax = niceCeil(ymax * 1.05)
	lx0, lx1 := math.Log10(xmin), math.Log10(xmax)
	X := func(v float64) float64 { return float64(ml) + (math.Log10(v)-lx0)/(lx1-lx0)*pw }
	Y := func(v float64) float64 { return float64(mt) + (1-v/ymax)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="28" font-size="15" font-weight="bold">%s</text>`+"\n", ml, html.EscapeString(o.Title))
	// Grid and axes.
	for _, t := range yTicks(ymax) {
		y := Y(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e4e4e4"/>`+"\n", ml, y, W-mr, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", ml-6, y+4, trimFloat(math.Round(t*1000)/10)+"%")
	}
	for _, t := range xTicks(xmin, xmax) {
		x := X(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/>`+"\n", x, mt, x, H-mb)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, H-mb+18, FormatSeconds(t))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", ml, mt, pw, ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">checkpoint interval (log scale)</text>`+"\n", float64(ml)+pw/2, H-18)
	fmt.Fprintf(&b, `<text transform="translate(20 %.0f) rotate(-90)" text-anchor="middle">waste: share of time not computing</text>`+"\n", float64(mt)+ph/2)
	// Young and Daly.
	// The smaller of the two is labelled to the left of its line.
	for _, m := range []struct {
		v    float64
		name string
		left bool
	}{{o.Young, "Young", o.Young < o.Daly}, {o.Daly, "Daly", o.Daly <= o.Young}} {
		if m.v <= 0 || m.v < xmin || m.v > xmax {
			continue
		}
		x := X(m.v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555" stroke-dasharray="5 4"/>`+"\n", x, mt, x, H-mb)
		anchor, dx := "start", 5.0
		if m.left {
			anchor, dx = "end", -5
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#333" text-anchor="%s">%s %s</text>`+"\n", x+dx, mt+16, anchor, m.name, FormatSeconds(m.v))
	}
	// Curves.
	for i, c := range curves {
		col := curveColors[i%len(curveColors)]
		var pts, pred []string
		for _, p := range c.Points {
			x, y := X(p.Interval), Y(p.MeanWaste)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.2"/>`+"\n", x, Y(p.MeanWaste-p.WasteCI), x, Y(p.MeanWaste+p.WasteCI), col)
			r := 2.6
			if p.Mark != "" {
				r = 5
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="%.1f" fill="%s"/>`+"\n", x, y, r, col)
			if p.Predicted > 0 {
				pred = append(pred, fmt.Sprintf("%.1f,%.1f", x, Y(p.Predicted)))
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), col)
		if len(pred) > 0 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="2 3"/>`+"\n", strings.Join(pred, " "), col)
		}
		// Legend.
		ly := mt + 16 + 20*i
		lx := W - mr - 300
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><circle cx="%d" cy="%d" r="3" fill="%s"/>`+"\n", lx, ly, lx+24, ly, col, lx+12, ly, col)
		label := "simulated, " + c.Dist + " (95% CI)"
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", lx+30, ly+4, html.EscapeString(label))
		if len(pred) > 0 {
			ly += 20 * len(curves)
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="2 3"/>`+"\n", lx, ly, lx+24, ly, col)
			fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", lx+30, ly+4, "predicted, exponential model")
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func yTicks(ymax float64) []float64 {
	step := niceCeil(ymax / 6)
	var out []float64
	for t := 0.0; t <= ymax*1.0001; t += step {
		out = append(out, t)
	}
	return out
}

// xTicks are 1-2-5 steps of seconds, minutes or hours inside [lo, hi].
func xTicks(lo, hi float64) []float64 {
	cands := []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 5 * 86400}
	var out []float64
	for _, c := range cands {
		for _, s := range []float64{1e-3, 1e-2, 1e-1} {
			if v := c * s; c == 1 && v >= lo && v <= hi {
				out = append(out, v)
			}
		}
		if c >= lo && c <= hi {
			out = append(out, c)
		}
	}
	for len(out) > 9 { // thin out
		var thin []float64
		for i := 0; i < len(out); i += 2 {
			thin = append(thin, out[i])
		}
		out = thin
	}
	return out
}

// FormatSeconds writes 90 as 1m30s, 3600 as 1h, 0.25 as 250ms: short
// labels for plots.
func FormatSeconds(s float64) string {
	switch {
	case s < 1:
		return trimFloat(math.Round(s*1000)) + "ms"
	case s < 60:
		return trimFloat(math.Round(s*10)/10) + "s"
	case s < 3600:
		m := math.Floor(s / 60)
		r := math.Round(s - 60*m)
		if r == 0 || m >= 10 {
			return trimFloat(math.Round(s/60)) + "m"
		}
		return trimFloat(m) + "m" + trimFloat(r) + "s"
	}
	h := math.Floor(s / 3600)
	m := math.Round((s - 3600*h) / 60)
	if m == 60 {
		h, m = h+1, 0
	}
	if m == 0 {
		return trimFloat(h) + "h"
	}
	return trimFloat(h) + "h" + trimFloat(m) + "m"
}
