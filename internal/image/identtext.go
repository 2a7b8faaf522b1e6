package image

import (
	"fmt"
	"strings"
)

var schedPolicies = map[uint32]string{0: "other", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}

// threadIdentStr renders a thread's scheduling and privileges for inspect.
func threadIdentStr(th *Thread) string {
	var b strings.Builder
	if s := th.Sched; s != nil {
		pol := schedPolicies[s.Policy]
		if pol == "" {
			pol = fmt.Sprintf("policy %d", s.Policy)
		}
		fmt.Fprintf(&b, " sched %s", pol)
		if s.Nice != 0 {
			fmt.Fprintf(&b, " nice %d", s.Nice)
		}
		if s.Priority != 0 {
			fmt.Fprintf(&b, " prio %d", s.Priority)
		}
		if len(s.Affinity) > 0 {
			var words []string
			for i := len(s.Affinity) - 1; i >= 0; i-- {
				words = append(words, fmt.Sprintf("%x", s.Affinity[i]))
			}
			fmt.Fprintf(&b, " cpus %s", strings.Join(words, ","))
		}
	}
	if sec := th.Security; sec != nil {
		fmt.Fprintf(&b, " caps eff %#x prm %#x", sec.CapEff, sec.CapPrm)
		if sec.CapAmb != 0 {
			fmt.Fprintf(&b, " amb %#x", sec.CapAmb)
		}
		if sec.NoNewPrivs {
			b.WriteString(" no_new_privs")
		}
		switch sec.SeccompMode {
		case 1:
			b.WriteString(" seccomp strict")
		case 2:
			fmt.Fprintf(&b, " seccomp %d filters", len(sec.Seccomp))
		}
	}
	return b.String()
}

// processIdentText renders a process's POSIX timers and controlling
// terminal for inspect.
func processIdentText(b *strings.Builder, p *Process) {
	if len(p.Timers) > 0 {
		fmt.Fprintf(b, "  POSIX timers: %d\n", len(p.Timers))
		for _, t := range p.Timers {
			how := "signal " + SignalName(t.Signo)
			switch {
			case t.Notify == SigevNone:
				how = "no notification"
			case t.Notify&SigevThreadID != 0:
				how += fmt.Sprintf(" to thread %d", t.TID)
			}
			fmt.Fprintf(b, "    id %d clock %d %s value %#x, left %.3fs interval %.3fs\n", t.ID, t.Clock, how, t.Value,
				float64(t.ValueNs)/1e9, float64(t.IntervalNs)/1e9)
		}
	}
	if c := p.CTTY; c != nil {
		fmt.Fprintf(b, "  controlling terminal %s (foreground group %d)\n", c.Path, c.Foreground)
	}
}

// sysvText renders the System V semaphore sets and message queues.
func sysvText(b *strings.Builder, t *Tree) {
	if len(t.Sem)+len(t.Msg) == 0 {
		return
	}
	b.WriteString("\nSystem V IPC:\n")
	for _, s := range t.Sem {
		fmt.Fprintf(b, "  semaphore set %d key %#x mode %04o owner %d:%d values %v\n", s.ID, uint32(s.Key), s.Mode, s.UID, s.GID, s.Values)
	}
	for _, q := range t.Msg {
		n := 0
		for _, m := range q.Messages {
			n += len(m.Data)
		}
		fmt.Fprintf(b, "  message queue %d key %#x mode %04o owner %d:%d, %d messages (%d bytes)\n", q.ID, uint32(q.Key), q.Mode, q.UID, q.GID, len(q.Messages), n)
	}
}
