package image

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

var sigNames = map[int]string{
	1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
	9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
	16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU",
	23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO",
	30: "SIGPWR", 31: "SIGSYS",
}

// SignalName returns SIGxxx or SIGRTMIN+n.
func SignalName(sig int) string {
	if n, ok := sigNames[sig]; ok {
		return n
	}
	if sig >= 32 && sig <= 64 {
		return fmt.Sprintf("SIGRTMIN+%d", sig-32)
	}
	return fmt.Sprintf("signal %d", sig)
}

func sizeStr(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func protStr(m *Mapping) string {
	b := []byte("---p")
	if m.Prot&ProtRead != 0 {
		b[0] = 'r'
	}
	if m.Prot&ProtWrite != 0 {
		b[1] = 'w'
	}
	if m.Prot&ProtExec != 0 {
		b[2] = 'x'
	}
	if m.Shared {
		b[3] = 's'
	}
	return string(b)
}

// WriteText renders the tree for people (`ckpt inspect`).
func WriteText(w io.Writer, t *Tree) error {
	var b strings.Builder
	fmt.Fprintf(&b, "process tree rooted at %d (image format %d", t.Root, t.Version)
	if t.Kernel != "" {
		fmt.Fprintf(&b, ", dumped on Linux %s", t.Kernel)
	}
	fmt.Fprintf(&b, ")\n")
	fmt.Fprintf(&b, "CPU: xfeatures %#x, XSAVE area %d bytes\n", t.CPU.XFeatures, t.CPU.XStateSize)
	if c := t.Container; c != nil {
		fmt.Fprintf(&b, "container %s: hostname %s, PIDs inside its PID namespace, monotonic clock %.3fs, boottime %.3fs at the freeze\n",
			c.Name, c.Hostname, float64(c.Monotonic)/1e9, float64(c.Boottime)/1e9)
		for _, n := range c.Net {
			state := "down"
			if n.Up {
				state = "up"
			}
			fmt.Fprintf(&b, "  interface %s %s %s", n.Name, state, strings.Join(n.Addrs, " "))
			if n.Veth {
				fmt.Fprintf(&b, " (veth; host end %s %s)", n.Peer, strings.Join(n.PeerAddrs, " "))
			}
			fmt.Fprintf(&b, "\n")
		}
	}
	for _, w := range t.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, p := range t.Processes {
		fmt.Fprintf(&b, "\nprocess %d (%s) parent %d, group %d, session %d", p.PID, p.Comm, p.PPID, p.PGID, p.SID)
		if p.Zombie {
			fmt.Fprintf(&b, ", zombie (wait status %#x)\n", p.ExitCode)
			continue
		}
		if p.Stopped {
			b.WriteString(", stopped")
		}
		fmt.Fprintf(&b, "\n  exe %s, cwd %s, umask %04o, uid %d gid %d\n", p.ExePath, p.Cwd, p.Umask, p.Creds.UID[1], p.Creds.GID[1])
		fmt.Fprintf(&b, "  threads: %d\n", len(p.Threads))
		for _, th := range p.Threads {
			fmt.Fprintf(&b, "    %d %-16s rip %#x rsp %#x", th.TID, th.Comm, th.Regs.Rip, th.Regs.Rsp)
			if int64(th.Regs.Orig_rax) >= 0 {
				fmt.Fprintf(&b, " in syscall %d (rax %d)", th.Regs.Orig_rax, int64(th.Regs.Rax))
			}
			if th.Sigmask != 0 {
				fmt.Fprintf(&b, " blocked %#x", th.Sigmask)
			}
			if len(th.Pending) > 0 {
				fmt.Fprintf(&b, " pending %d", len(th.Pending))
			}
			if th.Rseq.Pointer != 0 {
				fmt.Fprintf(&b, " rseq %#x", th.Rseq.Pointer)
			}
			b.WriteString(threadIdentStr(th))
			b.WriteString("\n")
		}
		var total, saved uint64
		for _, m := range p.Mappings {
			total += m.Size()
			saved += m.Saved
		}
		fmt.Fprintf(&b, "  memory: %d areas, %s mapped, %s saved\n", len(p.Mappings), sizeStr(total), sizeStr(saved))
		for _, m := range p.Mappings {
			name := m.Path
			if name == "" {
				name = "[" + m.Kind + "]"
			}
			fmt.Fprintf(&b, "    %012x-%012x %s %-11s %9s saved %9s  %s\n", m.Start, m.End, protStr(m), m.Kind, sizeStr(m.Size()), sizeStr(m.Saved), name)
		}
		fmt.Fprintf(&b, "  files: %d\n", len(p.FDs))
		for _, fd := range p.FDs {
			fmt.Fprintf(&b, "    %3d %-8s %s flags %#o", fd.Num, fd.Kind, fd.Path, fd.Flags)
			if fd.Offset != 0 {
				fmt.Fprintf(&b, " offset %d", fd.Offset)
			}
			if fd.CloExec {
				b.WriteString(" cloexec")
			}
			if fd.Desc != 0 {
				fmt.Fprintf(&b, " shared#%d", fd.Desc)
			}
			b.WriteString(fdState(fd))
			b.WriteString("\n")
		}
		if len(p.SigActions) > 0 {
			b.WriteString("  signal dispositions:\n")
			acts := append([]SigAction(nil), p.SigActions...)
			sort.Slice(acts, func(i, j int) bool { return acts[i].Sig < acts[j].Sig })
			for _, a := range acts {
				h := fmt.Sprintf("handler %#x", a.Handler)
				if a.Handler == 1 {
					h = "ignored"
				}
				fmt.Fprintf(&b, "    %-12s %s flags %#x mask %#x\n", SignalName(a.Sig), h, a.Flags, a.Mask)
			}
		}
		if len(p.Pending) > 0 {
			fmt.Fprintf(&b, "  pending (process-wide):")
			for _, s := range p.Pending {
				fmt.Fprintf(&b, " %s", SignalName(s.Signo))
			}
			b.WriteString("\n")
		}
		processIdentText(&b, p)
	}
	if len(t.Pipes) > 0 {
		b.WriteString("\npipes:\n")
		for _, p := range t.Pipes {
			kind := "pipe"
			if p.Fifo != "" {
				kind = "fifo " + p.Fifo
			}
			fmt.Fprintf(&b, "  %s:[%d] capacity %d, %d bytes queued\n", kind, p.ID, p.Size, len(p.Data))
		}
	}
	if len(t.Sockets) > 0 {
		b.WriteString("\nunix sockets:\n")
		for _, s := range t.Sockets {
			b.WriteString("  " + socketStr(s) + "\n")
		}
	}
	if len(t.Shm) > 0 {
		b.WriteString("\nshared memory:\n")
		for _, s := range t.Shm {
			b.WriteString("  " + shmStr(s) + "\n")
		}
	}
	if len(t.Inet) > 0 {
		b.WriteString("\ninet sockets:\n")
		for _, s := range t.Inet {
			b.WriteString("  " + inetStr(s) + "\n")
		}
	}
	sysvText(&b, t)
	_, err := io.WriteString(w, b.String())
	return err
}
