package main

import (
	"fmt"
	"io"
	"os"

	"github.com/ckpt/ckpt/internal/group/recline"
	"github.com/spf13/cobra"
)

func newRecoveryLineCommand(g *globalOptions) *cobra.Command {
	var asJSON, inTransit bool
	c := &cobra.Command{
		Use:   "recovery-line FILE",
		Short: "Compute the recovery line of a run's checkpoints and messages",
		Long: `Read a trace of a distributed run from FILE ('-' for stdin) — each
process's checkpoints, sends, receives and failures, one event per line:

  P ckpt [LABEL]     P takes a checkpoint
  P send MSG Q       P sends message MSG to Q
  Q recv MSG         Q receives MSG
  P fail             P fails

and compute the most recent consistent recovery line of uncoordinated
checkpoints without message logging: every failed process goes back to its
last checkpoint, and while a message is an orphan (received, never sent)
its receiver rolls back, while one is lost (sent, never received) its
sender rolls back — the domino effect. Shows each rollback, how far every
process goes back, and what sender-based message logging would do instead
(only the failed processes restart, and their messages are replayed).
--in-transit allows messages in transit across the line (as when channel
state is recorded). The format is in docs/GROUP.md.`,
		Example: `  ckpt recovery-line run.trace
  ckpt recovery-line --json run.trace`,
		Args: exactArgs(1, "a trace file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecoveryLine(g, args[0], asJSON, inTransit)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	c.Flags().BoolVar(&inTransit, "in-transit", false, "messages in transit across the line are allowed (recorded or logged)")
	return c
}

type recoveryProcJSON struct {
	Name             string   `json:"name"`
	Failed           bool     `json:"failed"`
	Line             string   `json:"line"`
	RolledBackEvents int      `json:"rolled_back_events"`
	RolledBackCkpts  int      `json:"rolled_back_checkpoints"`
	LoggingRestart   string   `json:"logging_restart,omitempty"`
	LoggingReplayed  []string `json:"logging_replayed,omitempty"`
}

type recoveryStepJSON struct {
	Message string `json:"message"`
	Problem string `json:"problem"` // orphan | lost
	Process string `json:"process"`
	From    string `json:"from"`
	To      string `json:"to"`
}

type recoveryJSON struct {
	Processes []recoveryProcJSON `json:"processes"`
	Rollbacks []recoveryStepJSON `json:"rollbacks"`
}

func runRecoveryLine(g *globalOptions, file string, asJSON, inTransit bool) error {
	var in io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	t, err := recline.Parse(in)
	if err != nil {
		return usageError("reading %s: %v", file, err)
	}
	if !asJSON {
		if inTransit {
			t.ReportInTransit(g.stdout)
		} else {
			t.Report(g.stdout)
		}
		return nil
	}
	l := t.Recover()
	if inTransit {
		l = t.RecoverInTransit()
	}
	var out recoveryJSON
	for p, name := range t.Names {
		pj := recoveryProcJSON{Name: name, Failed: t.Failed[p], Line: t.Label(p, l.Pos[p]), RolledBackEvents: len(t.Events[p]) - l.Pos[p]}
		for _, e := range t.Events[p][l.Pos[p]:] {
			if e.Kind == recline.Ckpt {
				pj.RolledBackCkpts++
			}
		}
		if t.Failed[p] {
			start := t.Start()
			pj.LoggingRestart = t.Label(p, start[p])
			pj.LoggingReplayed = t.Replayed(p)
		}
		out.Processes = append(out.Processes, pj)
	}
	out.Rollbacks = []recoveryStepJSON{}
	for _, s := range l.Steps {
		prob := "lost"
		if s.Orphan {
			prob = "orphan"
		}
		out.Rollbacks = append(out.Rollbacks, recoveryStepJSON{Message: s.Msg, Problem: prob, Process: t.Names[s.Proc], From: t.Label(s.Proc, s.From), To: t.Label(s.Proc, s.To)})
	}
	if err := g.printJSON(out); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}
