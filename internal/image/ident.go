package image

// Sched is a thread's scheduling state as sched_getattr(2) gives it, with
// its CPU affinity.
type Sched struct {
	Policy   uint32 `json:"policy"`
	Flags    uint64 `json:"flags,omitempty"` // SCHED_FLAG_RESET_ON_FORK, ...
	Nice     int32  `json:"nice,omitempty"`
	Priority uint32 `json:"priority,omitempty"` // real-time priority
	Runtime  uint64 `json:"runtime,omitempty"`  // SCHED_DEADLINE parameters, ns
	Deadline uint64 `json:"deadline,omitempty"`
	Period   uint64 `json:"period,omitempty"`
	// Affinity is the CPU mask, 64 CPUs per word (empty: not read).
	Affinity []uint64 `json:"affinity,omitempty"`
}

// Security is a thread's capability sets, securebits, no_new_privs and
// seccomp state (all per thread in Linux).
type Security struct {
	CapInh     uint64 `json:"cap_inh"`
	CapPrm     uint64 `json:"cap_prm"`
	CapEff     uint64 `json:"cap_eff"`
	CapBnd     uint64 `json:"cap_bnd"`
	CapAmb     uint64 `json:"cap_amb"`
	Securebits uint32 `json:"securebits,omitempty"`
	NoNewPrivs bool   `json:"no_new_privs,omitempty"`
	// SeccompMode is 0 (none), 1 (strict) or 2 (filters).
	SeccompMode int `json:"seccomp_mode,omitempty"`
	// Seccomp is the filter chain in installation order (the first
	// installed first); each runs for every system call.
	Seccomp []SeccompFilter `json:"seccomp,omitempty"`
}

// SeccompFilter is one classic-BPF seccomp program.
type SeccompFilter struct {
	Flags uint64 `json:"flags,omitempty"` // SECCOMP_FILTER_FLAG_LOG, SPEC_ALLOW
	Prog  []byte `json:"prog"`            // struct sock_filter[], 8 bytes each
}

// POSIX timer notification kinds (sigev_notify).
const (
	SigevSignal   = 0
	SigevNone     = 1
	SigevThreadID = 4
)

// PosixTimer is a timer_create(2) timer.
type PosixTimer struct {
	ID     int    `json:"id"`
	Clock  int    `json:"clock"`
	Notify int    `json:"notify"`        // SigevSignal, SigevNone, SigevThreadID
	TID    int    `json:"tid,omitempty"` // SigevThreadID: the thread signalled
	Signo  int    `json:"signo"`
	Value  uint64 `json:"value"` // sigev_value
	// Time left and interval, relative, in nanoseconds (0, 0: disarmed).
	ValueNs    int64 `json:"value_ns"`
	IntervalNs int64 `json:"interval_ns"`
	Overrun    int   `json:"overrun,omitempty"` // timer_getoverrun at dump (not restored)
}

// ControllingTTY is the terminal a session leader of the tree controls.
type ControllingTTY struct {
	Dev  uint64 `json:"dev"`  // device number (stat tty_nr)
	Path string `json:"path"` // e.g. /dev/pts/3
	// Foreground is the terminal's foreground process group (0: unknown).
	Foreground int `json:"foreground,omitempty"`
}
