package repo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

// TestMain lets the test binary act as a second checkpointing process.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CKPT_TEST_WRITER_DIR"); dir != "" {
		os.Exit(writerChild(dir, os.Getenv("CKPT_TEST_WRITER_NAME"), os.Getenv("CKPT_TEST_WRITER_N")))
	}
	os.Exit(m.Run())
}

func writerChild(dir, name, count string) int {
	ctx := context.Background()
	n, _ := strconv.Atoi(count)
	r, err := OpenDir(ctx, dir, nil, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var parent *Manifest
	for i := 0; i < n; i++ {
		if name == "gc" {
			if _, err := r.GC(ctx); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			continue
		}
		w, err := r.NewWriter(ctx, WriterOptions{Name: name, Kind: KindLibrary, Parent: parent})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ow, _ := w.Create("data", "bytes", nil)
		// Shared content (dedup across writers) plus private content.
		ow.Write(randBytes(42, 64<<10))
		ow.Write(randBytes(uint64(os.Getpid()*1000+i), 64<<10))
		if parent, err = w.Commit(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func TestConcurrentProcesses(t *testing.T) {
	_, dir := newDirRepo(t, nil)
	const per = 15
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for _, name := range []string{"shared", "shared", "own", "gc"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "CKPT_TEST_WRITER_DIR="+dir, "CKPT_TEST_WRITER_NAME="+name, "CKPT_TEST_WRITER_N="+strconv.Itoa(per))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%s writer: %v: %s", name, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := OpenDir(ctx, dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	ms, bad, err := r.List(ctx)
	if err != nil || len(bad) > 0 {
		t.Fatalf("list: %v %v", err, bad)
	}
	seqs := map[string]map[uint64]bool{}
	for _, m := range ms {
		if seqs[m.Name] == nil {
			seqs[m.Name] = map[uint64]bool{}
		}
		if seqs[m.Name][m.Seq] {
			t.Fatalf("%s: sequence %d assigned twice", m.Name, m.Seq)
		}
		seqs[m.Name][m.Seq] = true
		if err := r.Verify(ctx, m, nil); err != nil {
			t.Fatalf("%s: %v", m.Ref(), err)
		}
	}
	if len(seqs["shared"]) != 2*per || len(seqs["own"]) != per {
		t.Fatalf("want %d and %d checkpoints, got %d and %d", 2*per, per, len(seqs["shared"]), len(seqs["own"]))
	}
	for i := uint64(1); i <= 2*per; i++ {
		if !seqs["shared"][i] {
			t.Fatalf("sequence %d of shared missing", i)
		}
	}
}
