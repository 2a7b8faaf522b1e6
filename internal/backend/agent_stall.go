package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAgentStallTimeout is how long a connection to an agent may move no
// byte before it is given up. A peer that is cut off (a partition, a frozen
// host) drops no connection: without it a transfer would wait forever and
// hold the flush queue behind it.
const DefaultAgentStallTimeout = 60 * time.Second

var agentStall atomic.Int64

func init() { agentStall.Store(int64(DefaultAgentStallTimeout)) }

// SetAgentStallTimeout sets the stall timeout of this process's agent
// connections (the agent sets it from limits.stall_timeout_ms).
func SetAgentStallTimeout(d time.Duration) {
	if d > 0 {
		agentStall.Store(int64(d))
	}
}

// AgentStallTimeout is the stall timeout in effect.
func AgentStallTimeout() time.Duration { return time.Duration(agentStall.Load()) }

// StallError is a transfer that made no progress for the stall timeout.
type StallError struct {
	Op, Addr string
	After    time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("%s %s: no progress for %v (the peer stalled or the network is cut off)", e.Op, e.Addr, e.After)
}
func (e *StallError) Unwrap() error { return os.ErrDeadlineExceeded }
func (e *StallError) Timeout() bool { return true }

// stallConn gives up a write the peer does not take within the stall
// timeout. Reads get no deadline here: a connection waits for an answer
// while its request body is still being fed (by an encoder that may be
// held up by another peer); do watches the answer instead.
type stallConn struct{ net.Conn }

func (c stallConn) Write(p []byte) (int, error) {
	d := AgentStallTimeout()
	c.Conn.SetWriteDeadline(time.Now().Add(d))
	n, err := c.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = &StallError{Op: "writing to", Addr: c.RemoteAddr().String(), After: d}
	}
	return n, err
}

// stallWatch cancels a request when its timer, armed while the client
// waits for the agent (for the answer, for each read of its body), runs
// out.
type stallWatch struct {
	cancel context.CancelCauseFunc
	stall  time.Duration
	addr   string
	mu     sync.Mutex
	t      *time.Timer
}

func (w *stallWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t == nil {
		w.t = time.AfterFunc(w.stall, func() {
			w.cancel(&StallError{Op: "waiting for", Addr: w.addr, After: w.stall})
		})
	} else {
		w.t.Reset(w.stall)
	}
}

func (w *stallWatch) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Stop()
	}
}

// sendWatch arms the watch once the request body is sent: from then on
// the agent owes the answer.
type sendWatch struct {
	r io.Reader
	w *stallWatch
}

func (s *sendWatch) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.w.arm()
	}
	return n, err
}

// recvWatch arms the watch around every read of the answer's body and
// ends the request's context when the body is closed.
type recvWatch struct {
	rc  io.ReadCloser
	w   *stallWatch
	ctx context.Context
}

func (r *recvWatch) Read(p []byte) (int, error) {
	r.w.arm()
	n, err := r.rc.Read(p)
	r.w.disarm()
	if err != nil && err != io.EOF {
		err = stallCause(r.ctx, err)
	}
	return n, err
}

// stallCause is the StallError that ended ctx, if one did, else err: the
// transport reports a cancelled request as "context canceled".
func stallCause(ctx context.Context, err error) error {
	var se *StallError
	if errors.As(context.Cause(ctx), &se) {
		return se
	}
	return err
}

func (r *recvWatch) Close() error {
	r.w.disarm()
	err := r.rc.Close()
	r.w.cancel(nil)
	return err
}
