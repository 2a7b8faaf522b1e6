// Package machine describes the machine a benchmark under bench/ runs on,
// for the lines that put its figures in context.
package machine

import (
	"os"
	"strings"
)

// Kernel is the running kernel's release.
func Kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// Load is the 1, 5 and 15 minute load averages, "?" if unreadable.
func Load() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
