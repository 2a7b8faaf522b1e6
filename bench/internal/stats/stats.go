// Package stats summarises the repeated timings of the whole-system
// benchmarks under bench/.
package stats

import (
	"slices"
	"time"
)

// Median is the middle value of ds (the upper one of an even count).
func Median(ds []time.Duration) time.Duration {
	return sorted(ds)[len(ds)/2]
}

// Range is the smallest and the largest value of ds.
func Range(ds []time.Duration) (lo, hi time.Duration) {
	s := sorted(ds)
	return s[0], s[len(s)-1]
}

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}
