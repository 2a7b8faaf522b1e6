// Package script runs data-driven protocol tests: a file of blocks, each
// one or more command lines, a line "----", and the expected output up to
// the next blank line. Expected outputs are written by hand (they are the
// specification); a mismatch fails the test showing both.
//
//	# a comment
//	send 0 1 5
//	deliver 0 1
//	----
//	0->1 m5 delivered
package script

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// Cmd is one command line: its name and arguments (words; key=value
// arguments are available through Arg).
type Cmd struct {
	Line string
	Name string
	Args []string
}

// Arg returns the value of key=value, and whether it was given.
func (c Cmd) Arg(key string) (string, bool) {
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// Run executes the blocks of the file at path. fn is called for every
// command line of a block; the outputs of a block's commands, joined, must
// equal the block's expected output (trailing space ignored).
func Run(t *testing.T, path string, fn func(t *testing.T, c Cmd) string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lineNo := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		lineNo++
		return sc.Text(), true
	}
	for {
		var cmds []Cmd
		start := 0
		// Commands up to "----".
		for {
			l, ok := next()
			if !ok {
				if len(cmds) > 0 {
					t.Fatalf("%s:%d: block without ----", path, lineNo)
				}
				return
			}
			trim := strings.TrimSpace(l)
			if trim == "----" {
				break
			}
			if trim == "" || strings.HasPrefix(trim, "#") {
				continue
			}
			if start == 0 {
				start = lineNo
			}
			w := strings.Fields(trim)
			cmds = append(cmds, Cmd{Line: trim, Name: w[0], Args: w[1:]})
		}
		var want []string
		for {
			l, ok := next()
			if !ok || strings.TrimSpace(l) == "" {
				break
			}
			want = append(want, strings.TrimRight(l, " \t"))
		}
		var got []string
		for _, c := range cmds {
			out := strings.TrimRight(fn(t, c), "\n")
			if out != "" {
				for _, l := range strings.Split(out, "\n") {
					got = append(got, strings.TrimRight(l, " \t"))
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, start, cmds[0].Line,
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}
