package sysvipc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// IDs lists the ids of the objects in /proc/sysvipc/{sem,msg} (kind "sem"
// or "msg") of the caller's IPC namespace; the id is the second column.
func IDs(kind string) ([]int, error) {
	b, err := os.ReadFile("/proc/sysvipc/" + kind)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var out []int
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil, fmt.Errorf("/proc/sysvipc/%s line %d: %q", kind, i+2, l)
		}
		id, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("/proc/sysvipc/%s line %d: id %q: %v", kind, i+2, f[1], err)
		}
		out = append(out, id)
	}
	return out, nil
}

// SetNextID makes the next object of kind ("sem", "msg", "shm") created in
// this IPC namespace get id (-1: back to normal allocation).
func SetNextID(kind string, id int) error {
	return os.WriteFile("/proc/sys/kernel/"+kind+"_next_id", []byte(strconv.Itoa(id)), 0)
}
