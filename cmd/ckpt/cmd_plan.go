package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ckpt/ckpt/internal/plan"
	"github.com/spf13/cobra"
)

func newPlanCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "plan FILE",
		Short: "Choose where to checkpoint a pipeline of stages",
		Long: `Read a pipeline (a chain or a DAG of stages: duration, state live after
each stage, failure rate, checkpoint bandwidth) from the JSON FILE ('-' for
stdin) and choose, by dynamic programming, the stage boundaries to
checkpoint at that minimise the expected completion time under exponential
failures. Prints the plan and its expected time against checkpointing after
every stage and never. The format is in docs/CLI.md ("ckpt plan and ckpt
sim"); examples/plan/ has examples.`,
		Example: `  ckpt plan examples/plan/pipeline.json
  ckpt plan --json examples/plan/dag.json`,
		Args: exactArgs(1, "a pipeline file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(g, args[0], asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return c
}

// planStageJSON is one stage of `ckpt plan --json`.
type planStageJSON struct {
	Name       string  `json:"name"`
	Duration   float64 `json:"duration_s"`
	State      float64 `json:"state_bytes"`
	Ckpt       float64 `json:"checkpoint_cost_s"`
	Restart    float64 `json:"restart_s"`
	MTBF       float64 `json:"mtbf_s"`
	Checkpoint bool    `json:"checkpoint"`
}

type planJSON struct {
	Stages          []planStageJSON `json:"stages"`
	CheckpointAfter []string        `json:"checkpoint_after"`
	Expected        float64         `json:"expected_s"`
	Every           float64         `json:"every_stage_s"`
	Never           float64         `json:"never_s"`
	FailureFree     float64         `json:"failure_free_s"`
}

func runPlan(g *globalOptions, file string, asJSON bool) error {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	spec, err := plan.Parse(b)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	p, err := spec.Problem()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	best, err := p.Optimal()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	n := p.N()
	every, never := make([]bool, n), make([]bool, n)
	for i := range every {
		every[i] = true
	}
	out := planJSON{Expected: best.Expected, Every: p.Expected(every), Never: p.Expected(never),
		FailureFree: p.FailureFree(), CheckpointAfter: []string{}}
	for i := 0; i < n; i++ {
		st := planStageJSON{Name: p.Names[i], Duration: p.Work[i], State: p.State[i], Checkpoint: best.After[i] && i < n-1}
		if i < n-1 {
			st.Ckpt, st.Restart = p.Ckpt[i], p.Restart[i+1]
		}
		if p.Rate[i] > 0 {
			st.MTBF = 1 / p.Rate[i]
		}
		if st.Checkpoint {
			out.CheckpointAfter = append(out.CheckpointAfter, st.Name)
		}
		out.Stages = append(out.Stages, st)
	}
	if asJSON {
		return g.printJSON(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tDURATION\tSTATE AFTER\tCHECKPOINT COST\tRESTART\tMTBF\tPLAN")
	for i, st := range out.Stages {
		cost, restart, mark := "-", "-", ""
		if i < n-1 {
			cost, restart = secs(st.Ckpt), secs(st.Restart)
		}
		if st.Checkpoint {
			mark = "checkpoint"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Name, secs(st.Duration), bytesIEC(st.State), cost, restart, secs(st.MTBF), mark)
	}
	tw.Flush()
	where := "none"
	if len(out.CheckpointAfter) > 0 {
		where = "after " + strings.Join(out.CheckpointAfter, ", ")
	}
	fmt.Fprintf(g.stdout, "\nexpected completion time\n")
	tw = tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  plan (%s):\t%s\n", where, secs(out.Expected))
	fmt.Fprintf(tw, "  checkpoint after every stage:\t%s\t%+.1f%%\n", secs(out.Every), 100*(out.Every/out.Expected-1))
	fmt.Fprintf(tw, "  never checkpoint:\t%s\t%+.1f%%\n", secs(out.Never), 100*(out.Never/out.Expected-1))
	fmt.Fprintf(tw, "  without failures:\t%s\n", secs(out.FailureFree))
	return tw.Flush()
}

// secs formats seconds as a duration rounded to what matters.
func secs(s float64) string {
	switch {
	case math.IsInf(s, 0) || s > 1e15:
		return "∞"
	case s == 0:
		return "0s"
	case s < 10:
		return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
	}
	d := time.Duration(s * float64(time.Second)).Round(time.Second).String()
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return d
}

func bytesIEC(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", b)
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}
