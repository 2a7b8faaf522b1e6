package agent

import "testing"

// TestFlusherRerunsJobAddedWhileRunning: a job added while the same job
// runs (a committed notice arriving while the flush started on Sync runs,
// and had already found no notice) runs once more; one added while it is
// only queued does not queue twice.
func TestFlusherRerunsJobAddedWhileRunning(t *testing.T) {
	s := &Server{cfg: &Config{}, met: newMetrics()}
	s.cfg.Limits.MaxQueue = 16
	f := newFlusher(s)
	g := &group{name: "sim"}
	j := job{g: g, id: "abc"}

	f.add(j, false)
	f.add(j, false) // queued already: the queued run will see the news
	if len(f.q) != 1 {
		t.Fatalf("queue holds %d jobs after adding one twice, want 1", len(f.q))
	}
	// It starts running (as run takes it), and the notice comes.
	f.q, f.running = nil, j.key()
	f.add(j, false)
	f.done(j.key())
	if len(f.q) != 1 || !f.set[j.key()] {
		t.Fatalf("after the run: queue %d, set %v; want the job queued once more", len(f.q), f.set)
	}
	select {
	case <-f.idle:
		t.Fatal("idle while the job is queued again")
	default:
	}
	// Its second run brings nothing new: it is done for good.
	f.q, f.running = nil, j.key()
	f.done(j.key())
	if len(f.q) != 0 || f.set[j.key()] {
		t.Fatalf("after the second run: queue %d, set %v; want empty", len(f.q), f.set)
	}
	select {
	case <-f.idle:
	default:
		t.Fatal("not idle after the last run")
	}
}
