//go:build linux

package dirty

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// Syscaller runs a system call inside the stopped target, as
// ptrace.Injector does (on the tracer thread).
type Syscaller interface {
	Syscall(nr int, args ...uint64) (uint64, error)
}

// ErrUnavailable is wrapped when the kernel (or the target) does not allow
// tracking writes with userfaultfd write-protection; callers fall back to
// comparing page hashes.
var ErrUnavailable = errors.New("userfaultfd write-protect tracking unavailable")

// Source reports the pages of a process written since the previous call.
// Tracker implements it; a hash-comparing fallback can too.
type Source interface {
	// Collect returns the sorted, merged, page-aligned ranges that may have
	// been written since the previous Collect (every tracked page on the
	// first call) and starts a new round.
	Collect() ([]Range, error)
	Close() error
}

// Tracker tracks the writes of one process with userfaultfd asynchronous
// write-protection and PAGEMAP_SCAN. It is not safe for concurrent use.
type Tracker struct {
	pid  int
	uffd int
	pm   *os.File
	reg  []Range // parts of the mappings registered for write-protection
	vec  []pageRegion

	// Registered counts the mapping parts registered so far (first Collect
	// and new mappings).
	Registered int

	// SpareHugePages leaves alone the mappings that hold or are advised for
	// transparent huge pages (reported whole by every Collect, unregistered
	// if they were registered before they got huge pages): the first write
	// to a write-protected huge page splits it, and khugepaged does not
	// collapse registered mappings again, so a tracker kept between
	// checkpoints would take the program's huge pages for good. Which
	// mappings those are is read from smaps by FindHuge (by the first
	// Collect if it was not called): call it while the target runs, as
	// smaps walks every page (~14 ms a GiB).
	SpareHugePages bool
	huge           []Range // mappings found with huge pages, sorted
	hugeKnown      bool
}

// Start creates the userfaultfd that will track pid's writes. The target
// must be stopped by the caller's tracer and sc must inject system calls
// into it: the descriptor is created inside the target (userfaultfd(2)
// works on the calling process's memory), taken over with pidfd_getfd and
// closed in the target before Start returns, so the target's fd table is as
// it was. Nothing is tracked until the first Collect, which may run while
// the target runs again.
func Start(pid int, sc Syscaller) (*Tracker, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: pidfd_open(%d): %v", ErrUnavailable, pid, err)
	}
	defer unix.Close(pidfd)
	raw, err := sc.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly)
	if err != nil {
		return nil, fmt.Errorf("%w: userfaultfd in process %d: %v", ErrUnavailable, pid, err)
	}
	tfd := int(raw)
	fd, gerr := unix.PidfdGetfd(pidfd, tfd, 0)
	if _, cerr := sc.Syscall(unix.SYS_CLOSE, uint64(tfd)); cerr != nil {
		if gerr == nil {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("process %d: closing the injected userfaultfd %d: %w", pid, tfd, cerr)
	}
	if gerr != nil {
		return nil, fmt.Errorf("%w: pidfd_getfd(%d, %d): %v", ErrUnavailable, pid, tfd, gerr)
	}
	return open(pid, fd)
}

// open finishes a tracker over a userfaultfd of pid's mm.
func open(pid, fd int) (*Tracker, error) {
	api := uffdioAPIArg{API: uffdAPI, Features: uffdFeatureWPAsync | uffdFeatureWPUnpopulated}
	if err := uffdAPICall(fd, &api); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: UFFDIO_API with WP_ASYNC|WP_UNPOPULATED: %v (needs Linux 6.7+)", ErrUnavailable, err)
	}
	pm, err := os.Open(procfs.Path(pid, "pagemap"))
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Tracker{pid: pid, uffd: fd, pm: pm, vec: make([]pageRegion, 1024)}, nil
}

// StartSelf tracks the calling process (tests, benchmarks).
func StartSelf() (*Tracker, error) {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK|uffdUserModeOnly, 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: userfaultfd: %v", ErrUnavailable, e)
	}
	return open(os.Getpid(), int(fd))
}

// PID is the tracked process.
func (t *Tracker) PID() int { return t.pid }

// Alive reports whether the memory the tracker follows is still the
// process's: after an exec or the process's death the tracker watches an
// address space nobody uses (its pagemap reads nothing) and must be
// replaced. A tracker that is not alive reports every page as written.
func (t *Tracker) Alive() bool {
	if t.uffd < 0 {
		return false
	}
	var b [8]byte
	n, err := t.pm.ReadAt(b[:], 0)
	return err == nil && n == len(b)
}

// Close stops tracking: the kernel unregisters every mapping once the last
// reference to the userfaultfd is gone (the target holds none).
func (t *Tracker) Close() error {
	if t.uffd < 0 {
		return nil
	}
	err := unix.Close(t.uffd)
	t.uffd = -1
	if cerr := t.pm.Close(); err == nil {
		err = cerr
	}
	return err
}

// Trackable reports whether the tracker follows writes to a mapping:
// private mappings other than the kernel's special ones. Writes to shared
// mappings land in their files.
func Trackable(e procfs.MapEntry) bool {
	if e.Shared {
		return false
	}
	p := e.Path
	if strings.HasPrefix(p, "[") {
		return p == "[heap]" || p == "[stack]" || strings.HasPrefix(p, "[anon:")
	}
	return true
}

// Collect returns the pages written since the previous Collect and
// re-protects them in the same step. Mapping parts that were not registered
// before (the first call, mappings created since, a mapping replaced at the
// same address) are returned whole and registered and protected now; the
// caller filters them by what is resident. Parts the kernel refuses to
// register are returned whole every time.
func (t *Tracker) Collect() ([]Range, error) {
	if t.uffd < 0 {
		return nil, errors.New("dirty: tracker closed")
	}
	if t.SpareHugePages && !t.hugeKnown {
		if err := t.FindHuge(); err != nil {
			return nil, err
		}
	}
	b, err := procfs.Read(t.pid, "maps")
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", t.pid, err)
	}
	maps, err := procfs.ParseMaps(b)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", t.pid, err)
	}
	var dirty, reg []Range
	for _, e := range maps {
		if !Trackable(e) {
			continue
		}
		if t.SpareHugePages && overlaps(t.huge, Range{e.Start, e.End - e.Start}) {
			for _, p := range split(Range{e.Start, e.End - e.Start}, t.reg) {
				if p.registered {
					_ = uffdUnregister(t.uffd, &uffdioRangeArg{Start: p.Addr, Len: p.Len})
				}
			}
			dirty = AppendRange(dirty, Range{e.Start, e.End - e.Start})
			continue
		}
		for _, p := range split(Range{e.Start, e.End - e.Start}, t.reg) {
			if p.registered {
				before := len(dirty)
				dirty, err = t.written(p.Range, dirty)
				if err == nil {
					reg = AppendRange(reg, p.Range)
					continue
				}
				if !errors.Is(err, unix.EPERM) {
					return nil, fmt.Errorf("process %d: PAGEMAP_SCAN %#x-%#x: %w", t.pid, p.Addr, p.End(), err)
				}
				// The mapping there is not the one registered (unmapped
				// and mapped again): everything in it is new.
				dirty = dirty[:before]
			}
			dirty = AppendRange(dirty, p.Range)
			if t.arm(p.Range) == nil {
				t.Registered++
				reg = AppendRange(reg, p.Range)
			}
		}
	}
	t.reg = reg
	return dirty, nil
}

// FindHuge reads which mappings hold or are advised for transparent huge
// pages (SpareHugePages), from /proc/PID/smaps.
func (t *Tracker) FindHuge() error {
	b, err := procfs.Read(t.pid, "smaps")
	if err != nil {
		return fmt.Errorf("process %d: %w", t.pid, err)
	}
	sm, err := procfs.ParseSmaps(b)
	if err != nil {
		return fmt.Errorf("process %d: %w", t.pid, err)
	}
	t.huge = t.huge[:0]
	for _, e := range sm {
		if e.AnonHugePages > 0 || e.HasFlag("hg") {
			t.huge = append(t.huge, Range{e.Start, e.End - e.Start})
		}
	}
	t.hugeKnown = true
	return nil
}

// overlaps reports whether r overlaps one of the sorted ranges rs.
func overlaps(rs []Range, r Range) bool {
	i := sort.Search(len(rs), func(k int) bool { return rs[k].End() > r.Addr })
	return i < len(rs) && rs[i].Addr < r.End()
}

// written appends the written pages of r (one registered mapping part) to
// out and re-protects them.
func (t *Tracker) written(r Range, out []Range) ([]Range, error) {
	a := pmScanArg{Flags: pmScanWPMatching | pmScanCheckWPAsync, Start: r.Addr, End: r.End(),
		CategoryMask: pageIsWritten, ReturnMask: pageIsWritten}
	for {
		n, err := scan(int(t.pm.Fd()), &a, t.vec)
		if err != nil {
			return out, err
		}
		for _, v := range t.vec[:n] {
			out = AppendRange(out, Range{v.Start, v.End - v.Start})
		}
		if a.WalkEnd >= r.End() {
			return out, nil
		}
		if a.WalkEnd <= a.Start && n == 0 {
			return out, fmt.Errorf("scan made no progress at %#x", a.Start)
		}
		a.Start = a.WalkEnd
	}
}

// arm registers r for write-protection and protects it. The scan asks for
// written pages without a result buffer, which makes the kernel protect
// every page table entry that exists (present pages, and holes inside
// populated page tables, with markers) and skip ranges without page
// tables: protecting those would allocate page tables for the whole range
// (a 64 GiB reservation), and a page faulted in there later is reported as
// written anyway.
func (t *Tracker) arm(r Range) error {
	ra := uffdioRegisterArg{Start: r.Addr, Len: r.Len, Mode: uffdioRegisterModeWP}
	if err := uffdRegister(t.uffd, &ra); err != nil {
		return err
	}
	a := pmScanArg{Flags: pmScanWPMatching | pmScanCheckWPAsync, Start: r.Addr, End: r.End(),
		CategoryMask: pageIsWritten, ReturnMask: pageIsWritten}
	_, err := scan(int(t.pm.Fd()), &a, nil)
	return err
}

type part struct {
	Range
	registered bool
}

// split cuts r into the parts inside and outside the sorted ranges reg.
func split(r Range, reg []Range) []part {
	var out []part
	i := sort.Search(len(reg), func(k int) bool { return reg[k].End() > r.Addr })
	at := r.Addr
	for at < r.End() {
		if i >= len(reg) || reg[i].Addr >= r.End() {
			out = append(out, part{Range{at, r.End() - at}, false})
			break
		}
		g := reg[i]
		if g.Addr > at {
			out = append(out, part{Range{at, g.Addr - at}, false})
			at = g.Addr
		}
		end := min(g.End(), r.End())
		out = append(out, part{Range{at, end - at}, true})
		at = end
		i++
	}
	return out
}
