// Package progress reports the progress of long operations on a terminal.
// Nothing is printed when the output is not a terminal, so scripts and logs
// see only results and diagnostics.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Bar shows "what: done/total (rate)" on one line, redrawn at most every
// 200 ms. A nil *Bar is valid and does nothing.
type Bar struct {
	w     io.Writer
	what  string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// New starts a bar on w when w is a terminal, else returns nil.
func New(w *os.File, what string, total int64) *Bar {
	if w == nil || !IsTerminal(w) {
		return nil
	}
	b := &Bar{w: w, what: what, total: total, start: time.Now(), stop: make(chan struct{})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.draw()
			}
		}
	}()
	return b
}

// Add records n more units done.
func (b *Bar) Add(n int64) {
	if b != nil {
		b.done.Add(n)
	}
}

func (b *Bar) draw() {
	d := b.done.Load()
	el := time.Since(b.start).Seconds()
	rate := ""
	if el > 0 {
		rate = fmt.Sprintf(", %s/s", Bytes(int64(float64(d)/el)))
	}
	if b.total > 0 {
		fmt.Fprintf(b.w, "\r%s: %s / %s (%d%%%s)\x1b[K", b.what, Bytes(d), Bytes(b.total), d*100/b.total, rate)
	} else {
		fmt.Fprintf(b.w, "\r%s: %s%s\x1b[K", b.what, Bytes(d), rate)
	}
}

// Done stops the bar and clears its line.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	close(b.stop)
	b.wg.Wait()
	fmt.Fprint(b.w, "\r\x1b[K")
}

// Bytes formats a byte count with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
