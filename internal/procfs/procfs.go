// Package procfs parses the files of /proc/PID that the dumper reads. The
// parsers are pure functions of the file contents: they never panic on
// malformed input and their errors say which file, line and field was wrong.
package procfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Error reports a malformed /proc file.
type Error struct {
	File string // "maps", "stat", ...
	Line int    // 1-based, 0 when not line-oriented
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("parsing %s line %d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("parsing %s: %s", e.File, e.Msg)
}

func errf(file string, line int, format string, a ...any) error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, a...)}
}

// MapEntry is one line of /proc/PID/maps.
type MapEntry struct {
	Start, End uint64
	Read       bool
	Write      bool
	Exec       bool
	Shared     bool
	Offset     uint64
	DevMajor   uint32
	DevMinor   uint32
	Inode      uint64
	Path       string // "" for anonymous, "[heap]", "/usr/lib/..."; " (deleted)" kept
}

// Deleted reports whether the mapped file was unlinked.
func (m MapEntry) Deleted() bool { return strings.HasSuffix(m.Path, " (deleted)") }

// ParseMaps parses /proc/PID/maps.
func ParseMaps(data []byte) ([]MapEntry, error) {
	var out []MapEntry
	for i, line := range splitLines(data) {
		n := i + 1
		if len(line) == 0 {
			continue
		}
		// addr perms offset dev inode [path]; the path may contain spaces.
		f, rest := fieldsN(line, 5)
		if len(f) < 5 {
			return nil, errf("maps", n, "want at least 5 fields, got %d", len(f))
		}
		var e MapEntry
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, errf("maps", n, "address range %q has no '-'", f[0])
		}
		var err error
		if e.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
			return nil, errf("maps", n, "start address %q: %v", lo, err)
		}
		if e.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
			return nil, errf("maps", n, "end address %q: %v", hi, err)
		}
		if e.End < e.Start {
			return nil, errf("maps", n, "end %#x before start %#x", e.End, e.Start)
		}
		p := f[1]
		if len(p) != 4 {
			return nil, errf("maps", n, "permissions %q: want 4 characters", p)
		}
		for j, want := range []byte{'r', 'w', 'x'} {
			if p[j] != want && p[j] != '-' {
				return nil, errf("maps", n, "permissions %q: bad character %q", p, p[j])
			}
		}
		e.Read, e.Write, e.Exec = p[0] == 'r', p[1] == 'w', p[2] == 'x'
		switch p[3] {
		case 's':
			e.Shared = true
		case 'p':
		default:
			return nil, errf("maps", n, "permissions %q: want p or s last", p)
		}
		if e.Offset, err = strconv.ParseUint(f[2], 16, 64); err != nil {
			return nil, errf("maps", n, "offset %q: %v", f[2], err)
		}
		maj, min, ok := strings.Cut(f[3], ":")
		if !ok {
			return nil, errf("maps", n, "device %q has no ':'", f[3])
		}
		v, err := strconv.ParseUint(maj, 16, 32)
		if err != nil {
			return nil, errf("maps", n, "device major %q: %v", maj, err)
		}
		e.DevMajor = uint32(v)
		if v, err = strconv.ParseUint(min, 16, 32); err != nil {
			return nil, errf("maps", n, "device minor %q: %v", min, err)
		}
		e.DevMinor = uint32(v)
		if e.Inode, err = strconv.ParseUint(f[4], 10, 64); err != nil {
			return nil, errf("maps", n, "inode %q: %v", f[4], err)
		}
		e.Path = strings.TrimLeft(rest, " ")
		out = append(out, e)
	}
	return out, nil
}

// fieldsN splits the first n space-separated fields and returns the rest.
func fieldsN(s string, n int) ([]string, string) {
	var f []string
	for len(f) < n {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			f = append(f, s)
			s = ""
			break
		}
		f = append(f, s[:i])
		s = s[i:]
	}
	return f, s
}

func splitLines(data []byte) []string {
	s := strings.TrimRight(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// Stat is /proc/PID/stat. Field numbers follow proc(5) (1-based).
type Stat struct {
	PID     int
	Comm    string
	State   byte
	PPID    int
	PGID    int
	SID     int
	TTY     int
	TPGID   int // foreground process group of the controlling terminal (-1: none)
	Flags   uint64
	Threads int
	// UTime and STime are the CPU time used, in clock ticks (USER_HZ).
	UTime, STime uint64
	// StartTime is in clock ticks since boot.
	StartTime                                                uint64
	StartCode, EndCode, StartStack                           uint64
	ExitSignal                                               int
	StartData, EndData, StartBrk, ArgStart, ArgEnd, EnvStart uint64
	EnvEnd                                                   uint64
	ExitCode                                                 int
}

// ParseStat parses /proc/PID/stat.
func ParseStat(data []byte) (Stat, error) {
	var s Stat
	str := strings.TrimRight(string(data), "\n")
	open := strings.IndexByte(str, '(')
	cl := strings.LastIndexByte(str, ')')
	if open < 0 || cl < open {
		return s, errf("stat", 0, "no parenthesised command name")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(str[:open]))
	if err != nil {
		return s, errf("stat", 0, "field 1 (pid) %q: %v", strings.TrimSpace(str[:open]), err)
	}
	s.PID = pid
	s.Comm = str[open+1 : cl]
	f := strings.Fields(str[cl+1:])
	// f[0] is field 3.
	if len(f) < 1 || len(f[0]) != 1 {
		return s, errf("stat", 0, "field 3 (state) missing or malformed")
	}
	s.State = f[0][0]
	num := func(field int) (int64, error) {
		i := field - 3
		if i >= len(f) {
			return 0, nil // older kernels have fewer fields
		}
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			u, err2 := strconv.ParseUint(f[i], 10, 64)
			if err2 != nil {
				return 0, errf("stat", 0, "field %d %q: %v", field, f[i], err)
			}
			return int64(u), nil
		}
		return v, nil
	}
	if len(f) < 18 {
		return s, errf("stat", 0, "want at least 20 fields, got %d", len(f)+2)
	}
	ints := []struct {
		field int
		dst   any
	}{
		{4, &s.PPID}, {5, &s.PGID}, {6, &s.SID}, {7, &s.TTY}, {8, &s.TPGID}, {9, &s.Flags}, {14, &s.UTime}, {15, &s.STime}, {20, &s.Threads},
		{22, &s.StartTime}, {26, &s.StartCode}, {27, &s.EndCode}, {28, &s.StartStack},
		{38, &s.ExitSignal}, {45, &s.StartData}, {46, &s.EndData}, {47, &s.StartBrk},
		{48, &s.ArgStart}, {49, &s.ArgEnd}, {50, &s.EnvStart}, {51, &s.EnvEnd}, {52, &s.ExitCode},
	}
	for _, x := range ints {
		v, err := num(x.field)
		if err != nil {
			return s, err
		}
		switch d := x.dst.(type) {
		case *int:
			*d = int(v)
		case *uint64:
			*d = uint64(v)
		}
	}
	return s, nil
}

// Status holds the fields of /proc/PID/status that the dumper uses.
type Status struct {
	Name      string
	Umask     uint32
	HasUmask  bool
	State     byte
	Tgid      int
	PID       int
	PPID      int
	UID       [4]int // real, effective, saved, filesystem
	GID       [4]int
	Groups    []int
	Threads   int
	SigPnd    uint64
	ShdPnd    uint64
	SigBlk    uint64
	SigIgn    uint64
	SigCgt    uint64
	Seccomp   int
	NoNewPriv int
	// Capability sets: inheritable, permitted, effective, bounding, ambient.
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
}

// ParseStatus parses /proc/PID/status. Unknown keys are ignored.
func ParseStatus(data []byte) (Status, error) {
	var s Status
	for i, line := range splitLines(data) {
		n := i + 1
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return s, errf("status", n, "no ':' in %q", trunc(line))
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "Name":
			s.Name = v
		case "Umask":
			var u uint64
			u, err = strconv.ParseUint(v, 8, 32)
			s.Umask, s.HasUmask = uint32(u), true
		case "State":
			if v == "" {
				err = fmt.Errorf("empty")
			} else {
				s.State = v[0]
			}
		case "Tgid":
			s.Tgid, err = strconv.Atoi(v)
		case "Pid":
			s.PID, err = strconv.Atoi(v)
		case "PPid":
			s.PPID, err = strconv.Atoi(v)
		case "Threads":
			s.Threads, err = strconv.Atoi(v)
		case "Seccomp":
			s.Seccomp, err = strconv.Atoi(v)
		case "NoNewPrivs":
			s.NoNewPriv, err = strconv.Atoi(v)
		case "CapInh":
			s.CapInh, err = strconv.ParseUint(v, 16, 64)
		case "CapPrm":
			s.CapPrm, err = strconv.ParseUint(v, 16, 64)
		case "CapEff":
			s.CapEff, err = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			s.CapBnd, err = strconv.ParseUint(v, 16, 64)
		case "CapAmb":
			s.CapAmb, err = strconv.ParseUint(v, 16, 64)
		case "Uid", "Gid":
			f := strings.Fields(v)
			if len(f) != 4 {
				err = fmt.Errorf("want 4 ids, got %d", len(f))
				break
			}
			dst := &s.UID
			if k == "Gid" {
				dst = &s.GID
			}
			for j := range f {
				if dst[j], err = strconv.Atoi(f[j]); err != nil {
					break
				}
			}
		case "Groups":
			for _, g := range strings.Fields(v) {
				var x int
				if x, err = strconv.Atoi(g); err != nil {
					break
				}
				s.Groups = append(s.Groups, x)
			}
		case "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt":
			var m uint64
			m, err = strconv.ParseUint(v, 16, 64)
			switch k {
			case "SigPnd":
				s.SigPnd = m
			case "ShdPnd":
				s.ShdPnd = m
			case "SigBlk":
				s.SigBlk = m
			case "SigIgn":
				s.SigIgn = m
			case "SigCgt":
				s.SigCgt = m
			}
		}
		if err != nil {
			return s, errf("status", n, "%s %q: %v", k, trunc(v), err)
		}
	}
	return s, nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Fdinfo is /proc/PID/fdinfo/N.
type Fdinfo struct {
	Pos   int64
	Flags uint32 // open flags including O_CLOEXEC
	MntID int
	Ino   uint64
	// Extra holds the other keys (eventfd-count, tfd, inotify, ...).
	Extra map[string]string
}

// ParseFdinfo parses /proc/PID/fdinfo/N.
func ParseFdinfo(data []byte) (Fdinfo, error) {
	var fi Fdinfo
	seen := map[string]bool{}
	for i, line := range splitLines(data) {
		n := i + 1
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			// Some kinds (inotify, epoll tfd) use "key: a:b c:d" lines that do
			// have a colon; a line without one is malformed.
			return fi, errf("fdinfo", n, "no ':' in %q", trunc(line))
		}
		v = strings.TrimSpace(v)
		var err error
		switch k {
		case "pos":
			fi.Pos, err = strconv.ParseInt(v, 10, 64)
		case "flags":
			var f uint64
			f, err = strconv.ParseUint(v, 8, 32)
			fi.Flags = uint32(f)
		case "mnt_id":
			fi.MntID, err = strconv.Atoi(v)
		case "ino":
			fi.Ino, err = strconv.ParseUint(v, 10, 64)
		default:
			if fi.Extra == nil {
				fi.Extra = map[string]string{}
			}
			if _, dup := fi.Extra[k]; dup {
				fi.Extra[k] += "\n" + v
			} else {
				fi.Extra[k] = v
			}
		}
		if err != nil {
			return fi, errf("fdinfo", n, "%s %q: %v", k, trunc(v), err)
		}
		seen[k] = true
	}
	if !seen["pos"] || !seen["flags"] {
		return fi, errf("fdinfo", 0, "missing pos or flags")
	}
	return fi, nil
}

// Unlimited is RLIM_INFINITY.
const Unlimited = ^uint64(0)

// Limit is one row of /proc/PID/limits.
type Limit struct {
	Name       string // "Max open files"
	Soft, Hard uint64
}

// LimitNames maps /proc/PID/limits row names to RLIMIT_* numbers.
var LimitNames = map[string]int{
	"Max cpu time": 0, "Max file size": 1, "Max data size": 2, "Max stack size": 3,
	"Max core file size": 4, "Max resident set": 5, "Max processes": 6, "Max open files": 7,
	"Max locked memory": 8, "Max address space": 9, "Max file locks": 10, "Max pending signals": 11,
	"Max msgqueue size": 12, "Max nice priority": 13, "Max realtime priority": 14, "Max realtime timeout": 15,
}

// ParseLimits parses /proc/PID/limits using the header's column positions.
func ParseLimits(data []byte) ([]Limit, error) {
	lines := splitLines(data)
	if len(lines) == 0 {
		return nil, errf("limits", 0, "empty")
	}
	h := lines[0]
	soft := strings.Index(h, "Soft Limit")
	hard := strings.Index(h, "Hard Limit")
	units := strings.Index(h, "Units")
	if !strings.HasPrefix(h, "Limit") || soft < 0 || hard < soft || units < hard {
		return nil, errf("limits", 1, "unexpected header %q", trunc(h))
	}
	val := func(s string) (uint64, error) {
		s = strings.TrimSpace(s)
		if s == "unlimited" {
			return Unlimited, nil
		}
		return strconv.ParseUint(s, 10, 64)
	}
	var out []Limit
	for i, line := range lines[1:] {
		n := i + 2
		if len(line) < hard {
			return nil, errf("limits", n, "line too short")
		}
		l := Limit{Name: strings.TrimSpace(line[:soft])}
		var err error
		if l.Soft, err = val(line[soft:hard]); err != nil {
			return nil, errf("limits", n, "soft limit of %q: %v", l.Name, err)
		}
		end := min(units, len(line))
		if l.Hard, err = val(line[hard:end]); err != nil {
			return nil, errf("limits", n, "hard limit of %q: %v", l.Name, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// AuxvEntry is one (type, value) pair of /proc/PID/auxv.
type AuxvEntry struct{ Type, Value uint64 }

// ParseAuxv parses the binary /proc/PID/auxv (x86-64: pairs of uint64),
// up to and excluding AT_NULL.
func ParseAuxv(data []byte) ([]AuxvEntry, error) {
	if len(data)%16 != 0 {
		return nil, errf("auxv", 0, "length %d is not a multiple of 16", len(data))
	}
	var out []AuxvEntry
	for off := 0; off < len(data); off += 16 {
		t := binary.LittleEndian.Uint64(data[off:])
		v := binary.LittleEndian.Uint64(data[off+8:])
		if t == 0 {
			return out, nil
		}
		out = append(out, AuxvEntry{t, v})
	}
	return nil, errf("auxv", 0, "no AT_NULL terminator")
}

// ParseIDList parses a space-separated list of ids (/proc/PID/task/TID/children)
// or the names of a /proc/PID/task directory joined by spaces.
func ParseIDList(data []byte) ([]int, error) {
	var out []int
	for _, f := range strings.Fields(string(data)) {
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			return nil, errf("id list", 0, "bad id %q", trunc(f))
		}
		out = append(out, v)
	}
	sort.Ints(out)
	return out, nil
}

// Path returns /proc/PID/name.
func Path(pid int, name string) string { return filepath.Join("/proc", strconv.Itoa(pid), name) }

// Read reads /proc/PID/name.
func Read(pid int, name string) ([]byte, error) { return os.ReadFile(Path(pid, name)) }

// TaskState is the state letter (R, S, D, Z, ...) of thread tid of process
// pid, or 0 when it cannot be read.
func TaskState(pid, tid int) byte {
	b, err := Read(pid, fmt.Sprintf("task/%d/stat", tid))
	if err != nil {
		return 0
	}
	st, err := ParseStat(b)
	if err != nil {
		return 0
	}
	return st.State
}

// Tasks lists the thread ids of pid.
func Tasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(Path(pid, "task"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return ParseIDList([]byte(strings.Join(names, " ")))
}

// Children lists the children of every thread of pid.
func Children(pid int) ([]int, error) {
	tids, err := Tasks(pid)
	if err != nil {
		return nil, err
	}
	var all []int
	for _, t := range tids {
		b, err := Read(pid, fmt.Sprintf("task/%d/children", t))
		if err != nil {
			if os.IsNotExist(err) {
				continue // thread exited
			}
			return nil, err
		}
		c, err := ParseIDList(bytes.TrimSpace(b))
		if err != nil {
			return nil, err
		}
		all = append(all, c...)
	}
	sort.Ints(all)
	return all, nil
}

// SmapsEntry is one area of /proc/PID/smaps with its memory counters in
// bytes (the kB figures times 1024).
type SmapsEntry struct {
	MapEntry
	Rss, Swap, Anonymous, AnonHugePages uint64
	// VmFlags are the area's two-letter flags ("rd wr mr mw me ac hg").
	VmFlags []string
}

// HasFlag reports whether VmFlags holds f ("hg": advised for transparent
// huge pages).
func (e SmapsEntry) HasFlag(f string) bool {
	for _, x := range e.VmFlags {
		if x == f {
			return true
		}
	}
	return false
}

// ParseSmaps parses /proc/PID/smaps: a maps line followed by "Key: N kB"
// lines (and a few other keys such as VmFlags that are skipped).
func ParseSmaps(data []byte) ([]SmapsEntry, error) {
	var out []SmapsEntry
	for i, line := range splitLines(data) {
		n := i + 1
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		isCounter := ok && !strings.ContainsAny(k, " -") && len(k) > 0
		if !isCounter {
			m, err := ParseMaps([]byte(line))
			if err != nil {
				return nil, errf("smaps", n, "%v", err)
			}
			if len(m) != 1 {
				return nil, errf("smaps", n, "expected an area header")
			}
			out = append(out, SmapsEntry{MapEntry: m[0]})
			continue
		}
		if len(out) == 0 {
			return nil, errf("smaps", n, "%s before any area", k)
		}
		switch k {
		case "VmFlags":
			out[len(out)-1].VmFlags = strings.Fields(v)
		case "Rss", "Swap", "Anonymous", "AnonHugePages":
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return nil, errf("smaps", n, "%s %q: want \"N kB\"", k, trunc(v))
			}
			x, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil || x > 1<<52 {
				return nil, errf("smaps", n, "%s %q: bad number", k, trunc(f[0]))
			}
			e := &out[len(out)-1]
			switch k {
			case "Rss":
				e.Rss = x * 1024
			case "Swap":
				e.Swap = x * 1024
			case "Anonymous":
				e.Anonymous = x * 1024
			case "AnonHugePages":
				e.AnonHugePages = x * 1024
			}
		}
	}
	return out, nil
}

// UnescapeMount undoes the octal escapes of a /proc/PID/mountinfo field
// (\040 for a space, \011, \012, \134).
func UnescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// BootID identifies this boot of the machine ("" when unknown).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
