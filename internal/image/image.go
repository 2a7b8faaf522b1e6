// Package image is the model of a checkpointed process tree, shared by the
// dumper, the restorer and `ckpt inspect`.
//
// A Tree is the metadata: processes, threads, registers, memory layout, file
// descriptors, pipes, signals. It is JSON-encodable and carries a format
// version. Memory contents are not part of it: the dumper hands pages to a
// PageWriter and the restorer takes them from a PageReader, so storage can
// chunk, deduplicate and compress them separately from the metadata.
package image

import (
	"encoding/json"
	"fmt"
)

// FormatVersion is the version of the Tree encoding this package writes.
// Decode refuses other versions.
const FormatVersion = 1

// PageSize is the page size of every image (x86-64).
const PageSize = 4096

// PageWriter receives a process's saved memory. Dump calls WritePages in ascending address order
// per process, with page-aligned addr and len(b) a multiple of the page size; b is only valid during the call.
type PageWriter interface {
	WritePages(pid int, addr uint64, b []byte) error
}

// PageReader gives memory back at restore. Ranges lists the saved extents of pid in ascending order.
type PageReader interface {
	Ranges(pid int) ([]Range, error)
	ReadPages(pid int, addr uint64, b []byte) error
}

// Range is a saved extent of memory.
type Range struct{ Addr, Len uint64 }

// Tree is a checkpointed process tree.
type Tree struct {
	Version int    `json:"version"`
	Root    int    `json:"root"` // PID of the process the dump was asked for
	Kernel  string `json:"kernel,omitempty"`
	// BootID is the machine's boot (/proc/sys/kernel/random/boot_id):
	// with Process.StartTime it recognizes a dumped process still alive.
	BootID    string        `json:"boot_id,omitempty"`
	CPU       CPU           `json:"cpu"`
	Processes []*Process    `json:"processes"` // parents before children
	Pipes     []*Pipe       `json:"pipes,omitempty"`
	Sockets   []*UnixSocket `json:"sockets,omitempty"`
	Inet      []*InetSocket `json:"inet,omitempty"` // TCP and UDP sockets
	Shm       []*SharedMem  `json:"shm,omitempty"`  // shared memory objects
	Sem       []*SemSet     `json:"sem,omitempty"`  // System V semaphore sets
	Msg       []*MsgQueue   `json:"msg,omitempty"`  // System V message queues
	Warnings  []string      `json:"warnings,omitempty"`
	// Container is set for a whole-container checkpoint: PIDs are those
	// inside the container's PID namespace (see Container).
	Container *Container `json:"container,omitempty"`
}

// CPU records what the saved register state needs from the processor.
type CPU struct {
	XFeatures  uint64 `json:"xfeatures"`   // XCR0 of the dumping machine (from the XSAVE area)
	XStateSize int    `json:"xstate_size"` // bytes of the NT_X86_XSTATE regset
}

// Process is one process of the tree.
type Process struct {
	PID  int    `json:"pid"`
	PPID int    `json:"ppid"` // outside the tree for the root
	PGID int    `json:"pgid"`
	SID  int    `json:"sid"`
	Comm string `json:"comm"`
	// StartTime is when the dumped process started, in clock ticks since
	// boot (stat field 22).
	StartTime uint64 `json:"start_time,omitempty"`
	Zombie    bool   `json:"zombie,omitempty"`
	Stopped   bool   `json:"stopped,omitempty"`   // stopped by job control (SIGSTOP, SIGTSTP, ...)
	ExitCode  int    `json:"exit_code,omitempty"` // raw wait status of a zombie

	Threads     []*Thread       `json:"threads,omitempty"` // Threads[0] is the leader (TID == PID)
	Mappings    []*Mapping      `json:"mappings,omitempty"`
	FDs         []*FD           `json:"fds,omitempty"`
	SigActions  []SigAction     `json:"sigactions,omitempty"` // only non-default dispositions
	Pending     []Siginfo       `json:"pending,omitempty"`    // process-wide queued signals
	Rlimits     []Rlimit        `json:"rlimits,omitempty"`
	Itimers     []Itimer        `json:"itimers,omitempty"`
	Cwd         string          `json:"cwd,omitempty"`
	Umask       uint32          `json:"umask"`
	Personality uint32          `json:"personality"`
	Creds       Creds           `json:"creds"`
	MM          MM              `json:"mm"`
	Auxv        []uint64        `json:"auxv,omitempty"` // type, value pairs, AT_NULL excluded
	Exe         *FileID         `json:"exe,omitempty"`
	ExePath     string          `json:"exe_path,omitempty"`
	Vdso        *VdsoLayout     `json:"vdso,omitempty"`
	Children    []int           `json:"children,omitempty"`
	Timers      []PosixTimer    `json:"timers,omitempty"` // timer_create timers
	CTTY        *ControllingTTY `json:"ctty,omitempty"`   // session leaders only
	Extra       []string        `json:"extra,omitempty"`  // free-form notes for inspect
}

// Thread is one thread (task) of a process.
type Thread struct {
	TID        int       `json:"tid"`
	Comm       string    `json:"comm,omitempty"`
	Regs       Regs      `json:"regs"`
	XSave      []byte    `json:"xsave"` // NT_X86_XSTATE regset
	Sigmask    uint64    `json:"sigmask"`
	Pending    []Siginfo `json:"pending,omitempty"`
	Altstack   Altstack  `json:"altstack"`
	TIDAddress uint64    `json:"tid_address"` // set_tid_address / CLONE_CHILD_CLEARTID
	RobustList uint64    `json:"robust_list"`
	RobustLen  uint64    `json:"robust_len"`
	Rseq       Rseq      `json:"rseq"`
	Sched      *Sched    `json:"sched,omitempty"`
	// Personality is the thread's own (personality(2) is per thread);
	// absent in older images, where threads share the process's.
	Personality *uint32   `json:"personality,omitempty"`
	Security    *Security `json:"security,omitempty"`
}

// Regs is the x86-64 general register set (struct user_regs_struct), with
// the same fields as golang.org/x/sys/unix.PtraceRegs so the two convert.
type Regs struct {
	R15, R14, R13, R12, Rbp, Rbx, R11, R10, R9, R8, Rax, Rcx, Rdx, Rsi, Rdi uint64
	Orig_rax                                                                uint64 //nolint:revive // kernel name
	Rip, Cs, Eflags, Rsp, Ss, Fs_base, Gs_base, Ds, Es, Fs, Gs              uint64
}

// Altstack is a sigaltstack.
type Altstack struct {
	SP    uint64 `json:"sp"`
	Flags int32  `json:"flags"`
	Size  uint64 `json:"size"`
}

// Rseq is a thread's restartable-sequences registration (Pointer 0: none).
type Rseq struct {
	Pointer   uint64 `json:"pointer"`
	Size      uint32 `json:"size"`
	Signature uint32 `json:"signature"`
}

// Siginfo is a queued signal: its raw 128-byte kernel siginfo.
type Siginfo struct {
	Signo int    `json:"signo"`
	Raw   []byte `json:"raw"`
}

// SigAction is a signal disposition as the kernel's struct sigaction.
type SigAction struct {
	Sig      int    `json:"sig"`
	Handler  uint64 `json:"handler"` // 1 = SIG_IGN
	Flags    uint64 `json:"flags"`
	Restorer uint64 `json:"restorer"`
	Mask     uint64 `json:"mask"`
}

// Rlimit is one resource limit.
type Rlimit struct {
	Resource int    `json:"resource"`
	Cur      uint64 `json:"cur"`
	Max      uint64 `json:"max"`
}

// Itimer is an interval timer (ITIMER_REAL, VIRTUAL, PROF) in microseconds.
type Itimer struct {
	Which    int   `json:"which"`
	Interval int64 `json:"interval_us"`
	Value    int64 `json:"value_us"`
}

// Creds are the process's ids.
type Creds struct {
	UID    [4]int `json:"uid"` // real, effective, saved, fs
	GID    [4]int `json:"gid"`
	Groups []int  `json:"groups,omitempty"`
}

// MM holds the fields of prctl(PR_SET_MM_MAP).
type MM struct {
	StartCode, EndCode, StartData, EndData uint64
	StartBrk, Brk, StartStack              uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd     uint64
}

// VdsoLayout is where the kernel's special mappings were.
type VdsoLayout struct {
	Vvar       Range  `json:"vvar"`
	VvarVclock Range  `json:"vvar_vclock"` // Len 0 on kernels before 6.13
	Vdso       Range  `json:"vdso"`
	Hash       string `json:"hash"` // sha256 of the vdso's bytes
}

// FileID identifies a file's version.
type FileID struct {
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Mode    uint32 `json:"mode"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	BuildID string `json:"build_id,omitempty"` // hex GNU build-id of an ELF file
}

// Same reports whether two identities describe the same file version.
func (a *FileID) Same(b *FileID) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size && a.MtimeNs == b.MtimeNs && a.BuildID == b.BuildID
}

// Mapping kinds.
const (
	KindAnon       = "anon"
	KindHeap       = "heap"
	KindStack      = "stack"
	KindFile       = "file"        // private or shared mapping of a file
	KindDeleted    = "deleted"     // private mapping of an unlinked file: all pages saved
	KindVvar       = "vvar"        // [vvar]
	KindVvarVclock = "vvar_vclock" // [vvar_vclock]
	KindVdso       = "vdso"
	KindVsyscall   = "vsyscall"
)

// Protection bits (PROT_*).
const (
	ProtRead  = 1
	ProtWrite = 2
	ProtExec  = 4
)

// Mapping is one virtual memory area.
type Mapping struct {
	Start  uint64  `json:"start"`
	End    uint64  `json:"end"`
	Prot   int     `json:"prot"` // ProtRead|ProtWrite|ProtExec
	Shared bool    `json:"shared,omitempty"`
	Offset uint64  `json:"offset,omitempty"`
	Path   string  `json:"path,omitempty"`
	Kind   string  `json:"kind"`
	File   *FileID `json:"file,omitempty"`
	Saved  uint64  `json:"saved"`         // bytes of this area handed to the PageWriter
	Shm    uint64  `json:"shm,omitempty"` // KindShm: SharedMem.ID
}

// Size is the length of the area.
func (m *Mapping) Size() uint64 { return m.End - m.Start }

// FD kinds.
const (
	FDFile    = "file"    // regular file or directory reopened by path
	FDDeleted = "deleted" // unlinked regular file: contents saved in Data
	FDDevice  = "device"  // /dev/null, /dev/zero, /dev/urandom, /dev/random, /dev/full
	FDPipe    = "pipe"    // both ends inside the tree: recreated with its data
	FDFifo    = "fifo"    // named pipe: reopened by path, data refilled
	FDOutside = "outside" // leads outside the tree (a terminal, a pipe to a shell, ...)
)

// FD is one open file descriptor.
type FD struct {
	Num     int     `json:"num"`
	Kind    string  `json:"kind"`
	Path    string  `json:"path,omitempty"` // readlink of /proc/PID/fd/N
	Flags   int     `json:"flags"`          // open(2) flags, O_CLOEXEC excluded
	CloExec bool    `json:"cloexec,omitempty"`
	Offset  int64   `json:"offset,omitempty"`
	File    *FileID `json:"file,omitempty"`
	Pipe    uint64  `json:"pipe,omitempty"` // Pipe.ID for pipes and FIFOs
	// Desc groups descriptors of the tree that share one open file
	// description (same offset and status flags); 0 means not shared.
	Desc int    `json:"desc,omitempty"`
	Data []byte `json:"data,omitempty"` // contents of a deleted file

	// State of the other kinds (see fdkinds.go); absent in older images.
	Eventfd  *Eventfd       `json:"eventfd,omitempty"`
	Timerfd  *Timerfd       `json:"timerfd,omitempty"`
	Signalfd *Signalfd      `json:"signalfd,omitempty"`
	Epoll    []EpollTarget  `json:"epoll,omitempty"`
	Inotify  []InotifyWatch `json:"inotify,omitempty"`
	Socket   uint64         `json:"socket,omitempty"` // UnixSocket.ID
	Inet     uint64         `json:"inet,omitempty"`   // InetSocket.ID
	Shm      uint64         `json:"shm,omitempty"`    // FDMemfd: SharedMem.ID
	TTY      *TTY           `json:"tty,omitempty"`    // FDOutside on a terminal: its settings
	Locks    []Lock         `json:"locks,omitempty"`
}

// Pipe is a pipe or FIFO with its queued data.
type Pipe struct {
	ID   uint64 `json:"id"` // inode of the pipe
	Size int    `json:"size"`
	Data []byte `json:"data,omitempty"`
	Fifo string `json:"fifo,omitempty"` // path of a named pipe
}

// Process returns the process with pid, or nil.
func (t *Tree) Process(pid int) *Process {
	for _, p := range t.Processes {
		if p.PID == pid {
			return p
		}
	}
	return nil
}

// Pipe returns the pipe with id, or nil.
func (t *Tree) Pipe(id uint64) *Pipe {
	for _, p := range t.Pipes {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// Encode returns the JSON encoding of t.
func Encode(t *Tree) ([]byte, error) { return json.MarshalIndent(t, "", " ") }

// Decode parses a JSON tree and validates it.
func Decode(b []byte) (*Tree, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("decoding process image: %w", err)
	}
	if probe.Version != FormatVersion {
		return nil, fmt.Errorf("process image format version %d, this ckpt reads version %d", probe.Version, FormatVersion)
	}
	var t Tree
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("decoding process image: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}
