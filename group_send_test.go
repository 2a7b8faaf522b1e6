package ckpt_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/group"
)

// TestSendTooLarge: a message larger than a frame may carry is refused by
// Send, for plain and logged ranks alike (a logged one used to log and
// send it, and the receiver dropped the link on it at every resend).
func TestSendTooLarge(t *testing.T) {
	for _, logged := range []bool{false, true} {
		_, addr, jobs, _, stop := startGroup(t, 2, 0, logged)
		ctx := context.Background()
		sends := make([]func([]byte) error, 2)
		joinPair(t, ctx, jobs, addr, logged, func(i int, r *ckpt.Rank, lr *ckpt.LoggedRank) {
			if lr != nil {
				sends[i] = func(b []byte) error { return lr.Send(ctx, 1-i, b) }
			} else {
				sends[i] = func(b []byte) error { return r.Send(1-i, b) }
			}
		})
		err := sends[0](make([]byte, group.MaxMessage+1))
		if err == nil || !strings.Contains(err.Error(), "exceed") {
			t.Errorf("logged %v: a %d-byte message: %v", logged, group.MaxMessage+1, err)
		}
		stop()
	}
}
