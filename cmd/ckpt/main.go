// Command ckpt checkpoints and restores computations: unmodified Linux
// processes, Go programs that use the ckpt library, and groups of them.
// See README.md and docs/CLI.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	// CKPT_CPUPROFILE=FILE writes a CPU profile of this run (for bench/).
	if p := os.Getenv("CKPT_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	pprof.StopCPUProfile()
	os.Exit(code)
}
