package procfs

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

const sampleMaps = `55d5c2a00000-55d5c2a02000 r--p 00000000 fe:00 1311      /usr/bin/cat
55d5c2a02000-55d5c2a07000 r-xp 00002000 fe:00 1311      /usr/bin/cat
55d5c3a6e000-55d5c3a8f000 rw-p 00000000 00:00 0          [heap]
7f0000000000-7f0000001000 rw-s 00000000 00:01 44         /dev/zero (deleted)
7f0000002000-7f0000003000 ---p 00000000 00:00 0 
7f0000004000-7f0000005000 r--p 00000000 fe:00 77         /tmp/with space/lib.so
7ffe4ec47000-7ffe4ec68000 rw-p 00000000 00:00 0          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`

func TestParseMaps(t *testing.T) {
	m, err := ParseMaps([]byte(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 8 {
		t.Fatalf("got %d entries", len(m))
	}
	if m[0].Start != 0x55d5c2a00000 || m[0].End != 0x55d5c2a02000 || !m[0].Read || m[0].Write || m[0].Path != "/usr/bin/cat" || m[0].Inode != 1311 || m[0].DevMajor != 0xfe {
		t.Errorf("entry 0: %+v", m[0])
	}
	if m[1].Offset != 0x2000 || !m[1].Exec {
		t.Errorf("entry 1: %+v", m[1])
	}
	if !m[3].Shared || !m[3].Deleted() {
		t.Errorf("entry 3: %+v", m[3])
	}
	if m[4].Path != "" || m[4].Read {
		t.Errorf("entry 4: %+v", m[4])
	}
	if m[5].Path != "/tmp/with space/lib.so" {
		t.Errorf("entry 5 path %q", m[5].Path)
	}
}

func TestParseMapsErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"zz-10 r--p 0 00:00 0\n", "line 1: start address"},
		{"10-20 r--p 0 00:00\n", "line 1: want at least 5 fields"},
		{"10 r--p 0 00:00 0\n", "no '-'"},
		{"20-10 r--p 0 00:00 0\n", "before start"},
		{"10-20 rw-q 0 00:00 0\n", "want p or s"},
		{"10-20 r--p 0 00:00 0\n10-20 r--p 0 0000 0\n", "line 2: device"},
		{"10-20 r--p 0 00:00 x\n", "inode"},
	} {
		_, err := ParseMaps([]byte(tc.in))
		var pe *Error
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &pe) {
			t.Errorf("ParseMaps(%q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

const sampleStat = "4242 (a (weird) name) S 1 4242 4242 34816 4242 4194560 101 0 0 0 0 0 0 0 20 0 3 0 12345 2441216 200 18446744073709551615 94000000000000 94000000004000 140720000000000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94000000010000 94000000011000 94000001000000 140720000001000 140720000001100 140720000001100 140720000002000 0\n"

func TestParseStat(t *testing.T) {
	s, err := ParseStat([]byte(sampleStat))
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != 4242 || s.Comm != "a (weird) name" || s.State != 'S' || s.PPID != 1 || s.PGID != 4242 || s.SID != 4242 {
		t.Errorf("%+v", s)
	}
	if s.Threads != 3 || s.StartTime != 12345 || s.StartCode != 94000000000000 || s.StartStack != 140720000000000 {
		t.Errorf("%+v", s)
	}
	if s.ExitSignal != 17 || s.StartBrk != 94000001000000 || s.EnvEnd != 140720000002000 || s.ExitCode != 0 {
		t.Errorf("%+v", s)
	}
	for _, bad := range []string{"", "12 no parens", "x (a) S 1", "12 (a) SS 1 2 3", "12 (a) S 1 2 3", "12 (a) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 x 18 19 20 21"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) succeeded", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t10\nPid:\t10\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t1\t2\t3\t4\nGroups:\t5 6 \nThreads:\t2\nSigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\nSigBlk:\t0000000000010000\nSigIgn:\t0000000001001000\nSigCgt:\t0000000180000002\nSeccomp:\t0\n"
	s, err := ParseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "python3" || s.Umask != 0o22 || !s.HasUmask || s.State != 'S' || s.PPID != 1 || s.GID != [4]int{1, 2, 3, 4} || len(s.Groups) != 2 || s.Threads != 2 || s.SigPnd != 0x100 || s.SigBlk != 0x10000 || s.SigCgt != 0x180000002 {
		t.Errorf("%+v", s)
	}
	for _, bad := range []string{"Name python\n", "Umask:\t9\n", "Uid:\t0 0\n", "SigBlk:\tzz\n", "Tgid:\tx\n"} {
		_, err := ParseStatus([]byte(bad))
		if err == nil || !strings.Contains(err.Error(), "status line 1") {
			t.Errorf("ParseStatus(%q) = %v", bad, err)
		}
	}
}

func TestParseFdinfo(t *testing.T) {
	fi, err := ParseFdinfo([]byte("pos:\t42\nflags:\t02100002\nmnt_id:\t23\nino:\t991\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Pos != 42 || fi.Flags != 0o2100002 || fi.MntID != 23 || fi.Ino != 991 {
		t.Errorf("%+v", fi)
	}
	fi, err = ParseFdinfo([]byte("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t5\neventfd-count:  0\neventfd-id: 3\n"))
	if err != nil || fi.Extra["eventfd-count"] != "0" {
		t.Errorf("%+v %v", fi, err)
	}
	for _, bad := range []string{"", "pos:\tx\nflags:\t0\n", "pos: 0\n", "pos: 0\nflags: 9\n", "garbage\n"} {
		if _, err := ParseFdinfo([]byte(bad)); err == nil {
			t.Errorf("ParseFdinfo(%q) succeeded", bad)
		}
	}
}

const sampleLimits = `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max open files            1024                 524288               files     
Max realtime timeout      unlimited            unlimited            us        
`

func TestParseLimits(t *testing.T) {
	l, err := ParseLimits([]byte(sampleLimits))
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 3 || l[0].Name != "Max cpu time" || l[0].Soft != Unlimited || l[1].Soft != 1024 || l[1].Hard != 524288 {
		t.Errorf("%+v", l)
	}
	if LimitNames[l[1].Name] != 7 {
		t.Errorf("name mapping")
	}
	for _, bad := range []string{"", "nonsense header\n", sampleLimits + "Max x                     12a                  1                    u\n", sampleLimits + "short\n"} {
		if _, err := ParseLimits([]byte(bad)); err == nil {
			t.Errorf("ParseLimits(%q) succeeded", bad)
		}
	}
}

func TestParseAuxv(t *testing.T) {
	var b []byte
	for _, v := range []uint64{6, 4096, 33, 0x7fff0000, 0, 0} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	a, err := ParseAuxv(b)
	if err != nil || len(a) != 2 || a[1] != (AuxvEntry{33, 0x7fff0000}) {
		t.Fatalf("%v %v", a, err)
	}
	if _, err := ParseAuxv(b[:15]); err == nil {
		t.Error("short auxv accepted")
	}
	if _, err := ParseAuxv(b[:32]); err == nil {
		t.Error("unterminated auxv accepted")
	}
}

func TestParseIDList(t *testing.T) {
	ids, err := ParseIDList([]byte("12 3 \n"))
	if err != nil || len(ids) != 2 || ids[0] != 3 {
		t.Fatal(ids, err)
	}
	for _, bad := range []string{"1 x", "-3", "0"} {
		if _, err := ParseIDList([]byte(bad)); err == nil {
			t.Errorf("ParseIDList(%q) succeeded", bad)
		}
	}
}

// TestSelf parses this process's own files: the live kernel's format.
func TestSelf(t *testing.T) {
	pid := os.Getpid()
	for name, parse := range map[string]func([]byte) error{
		"maps":     func(b []byte) error { _, err := ParseMaps(b); return err },
		"stat":     func(b []byte) error { _, err := ParseStat(b); return err },
		"status":   func(b []byte) error { _, err := ParseStatus(b); return err },
		"limits":   func(b []byte) error { _, err := ParseLimits(b); return err },
		"auxv":     func(b []byte) error { _, err := ParseAuxv(b); return err },
		"fdinfo/0": func(b []byte) error { _, err := ParseFdinfo(b); return err },
	} {
		b, err := Read(pid, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := parse(b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	tids, err := Tasks(pid)
	if err != nil || len(tids) == 0 {
		t.Errorf("Tasks: %v %v", tids, err)
	}
	if _, err := Children(pid); err != nil {
		t.Error(err)
	}
}

const sampleSmaps = `55d5c2a00000-55d5c2a02000 r--p 00000000 fe:00 1311      /usr/bin/cat
Size:                  8 kB
Rss:                   8 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me sd 
7f0000000000-7f4000000000 ---p 00000000 00:00 0 
Size:          268435456 kB
Rss:                   0 kB
Swap:                  4 kB
VmFlags: mr mw me nr sd 
7f4000000000-7f4000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                4096 kB
AnonHugePages:      4096 kB
VmFlags: rd wr mr mw me ac hg 
`

func TestParseSmaps(t *testing.T) {
	s, err := ParseSmaps([]byte(sampleSmaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 3 || s[0].Rss != 8192 || s[0].Path != "/usr/bin/cat" || s[1].Rss != 0 || s[1].Swap != 4096 || s[1].End != 0x7f4000000000 {
		t.Errorf("%+v", s)
	}
	if len(s) == 3 && (s[1].HasFlag("hg") || s[1].AnonHugePages != 0 || !s[2].HasFlag("hg") || s[2].AnonHugePages != 4<<20) {
		t.Errorf("huge pages: %+v", s)
	}
	for _, bad := range []string{"Rss: 4 kB\n", "10-20 r--p 0 00:00 0\nRss: x kB\n", "10-20 r--p 0 00:00 0\nRss: 4\n", "10-zz r--p 0 00:00 0\n"} {
		if _, err := ParseSmaps([]byte(bad)); err == nil {
			t.Errorf("ParseSmaps(%q) succeeded", bad)
		}
	}
	b, err := Read(os.Getpid(), "smaps")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSmaps(b); err != nil {
		t.Errorf("own smaps: %v", err)
	}
}
