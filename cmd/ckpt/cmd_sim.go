package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ckpt/ckpt/internal/policy"
	"github.com/ckpt/ckpt/internal/sim"
	"github.com/spf13/cobra"
)

type simOptions struct {
	work, cost, restart, downtime, mtbf, interval time.Duration
	restartSet                                    bool
	dists                                         []string
	shape, from, to                               float64
	points, runs                                  int
	seed                                          uint64
	svg                                           string
	asJSON                                        bool
}

func newSimCommand(g *globalOptions) *cobra.Command {
	var o simOptions
	c := &cobra.Command{
		Use:   "sim [--work D] [--cost D] [--restart D] [--mtbf D] [--dist exp,weibull] [--svg FILE]",
		Short: "Simulate a checkpointed job under random failures; waste vs interval",
		Long: `Simulate, event by event, a job of --work seconds of computation that
checkpoints every interval (cost --cost) and, after each failure, is down for
--downtime and restarts from its newest checkpoint (--restart; failures can
strike during work, checkpoints and restarts). Failures are exponential or
Weibull (--shape) with mean --mtbf, drawn from a generator seeded by --seed.

Each interval is simulated --runs times; ckpt prints the mean waste (share
of the wall time not spent computing) with a 95% confidence interval, and
for exponential failures the waste the closed-form model predicts. Without
--interval it sweeps --points intervals from --from to --to times Young's
√(2·cost·MTBF), with Young's and Daly's intervals added; --svg writes a plot
of waste vs interval with both marked.`,
		Example: `  ckpt sim --work 100h --cost 5m --mtbf 6h --svg waste.svg
  ckpt sim --work 24h --cost 30s --mtbf 2h --interval 10m --dist exp --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.restartSet = cmd.Flags().Changed("restart")
			return runSim(g, o)
		},
	}
	f := c.Flags()
	f.DurationVar(&o.work, "work", 100*time.Hour, "computation the job needs, failure-free")
	f.DurationVar(&o.cost, "cost", 5*time.Minute, "checkpoint cost")
	f.DurationVar(&o.restart, "restart", 0, "restart cost: reading the checkpoint back (default: --cost)")
	f.DurationVar(&o.downtime, "downtime", 0, "failure-free time lost per failure before the restart (requeue, reboot)")
	f.DurationVar(&o.mtbf, "mtbf", 6*time.Hour, "mean time between failures")
	f.StringSliceVar(&o.dists, "dist", []string{"exp", "weibull"}, "failure laws: exp, weibull")
	f.Float64Var(&o.shape, "shape", 0.7, "Weibull shape k (k < 1: failures cluster)")
	f.DurationVar(&o.interval, "interval", 0, "simulate this interval only (with Young's and Daly's)")
	f.Float64Var(&o.from, "from", 0.2, "sweep from this multiple of Young's interval")
	f.Float64Var(&o.to, "to", 5, "sweep to this multiple of Young's interval")
	f.IntVar(&o.points, "points", 21, "intervals in the sweep")
	f.IntVar(&o.runs, "runs", 1000, "simulated runs per interval")
	f.Uint64Var(&o.seed, "seed", 1, "random seed")
	f.StringVar(&o.svg, "svg", "", "write a plot of waste vs interval to this SVG file")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON document")
	return c
}

type simJSON struct {
	Work     float64     `json:"work_s"`
	Cost     float64     `json:"cost_s"`
	Restart  float64     `json:"restart_s"`
	Downtime float64     `json:"downtime_s"`
	MTBF     float64     `json:"mtbf_s"`
	Runs     int         `json:"runs"`
	Seed     uint64      `json:"seed"`
	Young    float64     `json:"young_s"`
	Daly     float64     `json:"daly_s"`
	Curves   []sim.Curve `json:"curves"`
}

func runSim(g *globalOptions, o simOptions) error {
	if !o.restartSet {
		o.restart = o.cost
	}
	switch {
	case o.work <= 0 || o.mtbf <= 0 || o.cost < 0 || o.restart < 0 || o.downtime < 0 || o.interval < 0:
		return usageError("sim: --work and --mtbf must be positive, --cost, --restart, --downtime, --interval not negative")
	case o.runs < 1 || o.points < 2 || o.from <= 0 || o.to <= o.from:
		return usageError("sim: want --runs ≥ 1, --points ≥ 2, 0 < --from < --to")
	case o.shape <= 0:
		return usageError("sim: --shape must be positive")
	}
	m := o.mtbf.Seconds()
	var dists []sim.Dist
	for _, d := range o.dists {
		switch strings.ToLower(d) {
		case "exp", "exponential":
			dists = append(dists, sim.Exponential{MTBF: m})
		case "weibull":
			dists = append(dists, sim.Weibull{MTBF: m, Shape: o.shape})
		default:
			return usageError("sim: --dist %q: want exp or weibull", d)
		}
	}
	young, daly := policy.Young(o.cost, o.mtbf).Seconds(), policy.Daly(o.cost, o.mtbf).Seconds()
	if young == 0 && o.interval == 0 {
		return usageError("sim: with --cost 0 there is no optimum to sweep around; give --interval")
	}
	marks := map[float64]string{young: "young", daly: "daly"}
	var intervals []float64
	if o.interval > 0 {
		intervals = sim.Intervals(o.interval.Seconds(), o.interval.Seconds(), 1, young, daly)
	} else {
		intervals = sim.Intervals(young*o.from, young*o.to, o.points, young, daly)
	}
	intervals = dedupe(intervals)
	job := sim.Job{Work: o.work.Seconds(), Cost: o.cost.Seconds(), Restart: o.restart.Seconds(), Downtime: o.downtime.Seconds()}
	out := simJSON{Work: job.Work, Cost: job.Cost, Restart: job.Restart, Downtime: job.Downtime, MTBF: m,
		Runs: o.runs, Seed: o.seed, Young: young, Daly: daly}
	for _, d := range dists {
		out.Curves = append(out.Curves, sim.Sweep(job, d, intervals, marks, o.runs, o.seed))
	}
	if o.svg != "" {
		f, err := os.Create(o.svg)
		if err != nil {
			return err
		}
		fs := func(d time.Duration) string { return sim.FormatSeconds(d.Seconds()) }
		title := fmt.Sprintf("Waste vs checkpoint interval: work %s, C %s, R %s, MTBF %s, %d runs per point", fs(o.work), fs(o.cost), fs(o.restart), fs(o.mtbf), o.runs)
		err = sim.WriteSVG(f, out.Curves, sim.PlotOptions{Title: title, Young: young, Daly: daly})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", o.svg, err)
		}
	}
	if o.asJSON {
		return g.printJSON(out)
	}
	fmt.Fprintf(g.stdout, "job %s, checkpoint %s, restart %s, downtime %s, MTBF %s; %d runs per interval, seed %d\n",
		o.work, o.cost, o.restart, o.downtime, o.mtbf, o.runs, o.seed)
	fmt.Fprintf(g.stdout, "Young √(2CM) = %s, Daly = %s\n", secs(young), secs(daly))
	for _, c := range out.Curves {
		fmt.Fprintf(g.stdout, "\n%s\n", c.Dist)
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "INTERVAL\tWASTE\t95% CI\tPREDICTED\tMEAN TIME\tFAILURES\tCHECKPOINTS\t\t")
		for _, p := range c.Points {
			pred := "-"
			if p.Predicted > 0 {
				pred = fmt.Sprintf("%.2f%%", 100*p.Predicted)
			}
			fmt.Fprintf(tw, "%s\t%.2f%%\t±%.2f%%\t%s\t%s\t%.1f\t%.1f\t%s\t\n", secs(p.Interval), 100*p.MeanWaste, 100*p.WasteCI, pred, secs(p.MeanTime), p.MeanFailures, p.MeanCheckpoint, p.Mark)
		}
		tw.Flush()
		lo := c.Min()
		fmt.Fprintf(g.stdout, "least waste %.2f%% at %s", 100*lo.MeanWaste, secs(lo.Interval))
		if p, ok := c.At("daly"); ok {
			fmt.Fprintf(g.stdout, "; at Daly's %.2f%%", 100*p.MeanWaste)
		}
		if p, ok := c.At("young"); ok {
			fmt.Fprintf(g.stdout, "; at Young's %.2f%%", 100*p.MeanWaste)
		}
		fmt.Fprintln(g.stdout)
	}
	return nil
}

func dedupe(s []float64) []float64 {
	var out []float64
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
