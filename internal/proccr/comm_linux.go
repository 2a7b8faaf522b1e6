package proccr

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/dump"
)

// commOf reads a process's command name, the default checkpoint name.
func commOf(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("process %d: %w", pid, dump.ErrNotFound)
		}
		return "", err
	}
	name := strings.Map(func(r rune) rune {
		if r <= ' ' || r == '@' || r == '/' || r == 0x7f {
			return '_'
		}
		return r
	}, strings.TrimSpace(string(b)))
	if name == "" {
		name = "pid-" + strconv.Itoa(pid)
	}
	return name, nil
}
