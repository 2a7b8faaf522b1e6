package recline

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/group/script"
)

func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var trace strings.Builder
			script.Run(t, f, func(t *testing.T, c script.Cmd) string {
				if c.Name != "report" {
					trace.WriteString(c.Line + "\n")
					return ""
				}
				tr, err := Parse(strings.NewReader(trace.String()))
				trace.Reset()
				if err != nil {
					return "error: " + err.Error()
				}
				var b strings.Builder
				tr.Report(&b)
				return b.String()
			})
		})
	}
}
