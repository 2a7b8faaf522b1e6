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

// Spread is the median of ds (as Median) with its smallest and largest
// value: what every summary line reports, from one sort.
func Spread(ds []time.Duration) (median, lo, hi time.Duration) {
	s := sorted(ds)
	return s[len(s)/2], s[0], s[len(s)-1]
}

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}
