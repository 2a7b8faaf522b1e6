package levels

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
)

// Cluster is what recovery needs to know about the agents of a group (an
// agent's /topology answer plus the client's token).
type Cluster struct {
	Self    string            // this node's name
	Nodes   map[string]string // every node's HOST:PORT, this one included
	Group   string
	Token   string
	Durable string // the group's durable location, "" for none
}

// RecoverOptions configure Recover.
type RecoverOptions struct {
	Ref     string          // ID prefix, NAME or NAME@SEQ
	Key     []byte          // the repository key, nil when unencrypted
	Target  backend.Backend // where the checkpoint must end up (this node's store)
	Cluster Cluster
}

// Result says which level served the checkpoint.
type Result struct {
	Manifest *repo.Manifest
	Level    string // local, partner, erasure or durable
	Where    string // the store or the nodes that served it
	Tried    []string
	Decode   *DecodeStats // erasure only
}

type candidate struct {
	level string
	where string
	m     *repo.Manifest
	src   *repo.Repository // copy levels
	frags []FragmentRef    // erasure
}

// Recover finds the newest checkpoint matching Ref that is complete at any
// level, asking fastest first, and makes it complete in Target: already
// there (local), copied from a partner's store, rebuilt from any k
// fragments, or copied from durable storage. Chunks are checked on the way
// (a damaged copy is skipped for the next one). Target may be a store that
// never held the checkpoint (a replacement node).
func Recover(ctx context.Context, o RecoverOptions) (*Result, error) {
	var cands []candidate
	var notes []string
	add := func(level, where string, r *repo.Repository) {
		ms, err := r.Resolve(ctx, o.Ref)
		if err != nil {
			if !errors.Is(err, repo.ErrNotFound) {
				notes = append(notes, fmt.Sprintf("%s %s: %v", level, where, err))
			}
			return
		}
		for _, m := range ms {
			cands = append(cands, candidate{level: level, where: where, m: m, src: r})
		}
	}
	// L1: the target itself.
	if r, err := repo.Open(ctx, o.Target, o.Key); err == nil {
		add(Local, o.Target.Location(), r)
	} else if !errors.Is(err, repo.ErrNotRepository) {
		notes = append(notes, fmt.Sprintf("local %s: %v", o.Target.Location(), err))
	}
	// L2: partners' stores.
	names := make([]string, 0, len(o.Cluster.Nodes))
	for n := range o.Cluster.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	var holders []Holder
	for _, n := range names {
		a := backend.NewAgent(o.Cluster.Nodes[n], o.Cluster.Group, o.Cluster.Token)
		holders = append(holders, Holder{Node: n, Src: a})
		if n == o.Cluster.Self {
			continue
		}
		r, err := repo.Open(ctx, a, o.Key)
		if err != nil {
			if !errors.Is(err, repo.ErrNotRepository) {
				notes = append(notes, fmt.Sprintf("partner %s: %v", n, err))
			}
			continue
		}
		add(Partner, a.Location(), r)
	}
	// L3: fragments on every node.
	fc, fnotes, err := fragmentCandidates(ctx, holders, o)
	notes = append(notes, fnotes...)
	if err != nil {
		return nil, err
	}
	cands = append(cands, fc...)
	// L4: durable storage.
	if o.Cluster.Durable != "" {
		be, err := OpenDurable(ctx, o.Cluster.Durable, false)
		if err == nil {
			defer be.Close()
			var r *repo.Repository
			if r, err = repo.Open(ctx, be, o.Key); err == nil {
				add(Durable, o.Cluster.Durable, r)
			}
		}
		if err != nil && !errors.Is(err, backend.ErrNotExist) && !errors.Is(err, repo.ErrNotRepository) {
			notes = append(notes, fmt.Sprintf("durable %s: %v", o.Cluster.Durable, err))
		}
	}
	rank := map[string]int{Local: 0, Partner: 1, Erasure: 2, Durable: 3}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.m.Seq != b.m.Seq {
			return a.m.Seq > b.m.Seq
		}
		if !a.m.Time.Equal(b.m.Time) {
			return a.m.Time.After(b.m.Time)
		}
		return rank[a.level] < rank[b.level]
	})
	for _, c := range cands {
		res, err := materialize(ctx, o, c)
		if err == nil {
			res.Tried = notes
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		notes = append(notes, fmt.Sprintf("%s from %s %s: %v", c.m.Ref(), c.level, c.where, err))
	}
	msg := fmt.Sprintf("%q: no level holds a complete copy", o.Ref)
	if len(notes) > 0 {
		msg += "\n  " + strings.Join(notes, "\n  ")
	}
	return nil, fmt.Errorf("%s: %w", msg, repo.ErrNotFound)
}

// fragmentCandidates reads the fragment headers on every holder and
// resolves Ref among the checkpoints with at least k of them.
func fragmentCandidates(ctx context.Context, holders []Holder, o RecoverOptions) ([]candidate, []string, error) {
	refs, lost := FindFragments(ctx, holders, "")
	var notes []string
	for _, l := range lost {
		notes = append(notes, "erasure: "+l)
	}
	byID := map[string][]FragmentRef{}
	for _, r := range refs {
		byID[r.Header.Checkpoint] = append(byID[r.Header.Checkpoint], r)
	}
	// One in-memory repository per distinct config holds the manifests
	// the fragments carry, so Ref resolves exactly as in a repository.
	mems := map[string]*backend.Mem{}
	for id, rs := range byID {
		set := bestSet(rs, id)
		if len(set) == 0 || len(set) < set[0].Header.K {
			notes = append(notes, fmt.Sprintf("erasure: %s: %d fragments left, %d needed", short(id), len(set), max(1, firstK(set))))
			continue
		}
		h := set[0].Header
		mem := mems[string(h.Config)]
		if mem == nil {
			mem = backend.NewMem()
			mem.Save(ctx, backend.Handle{Kind: backend.Config}, h.Config)
			mems[string(h.Config)] = mem
		}
		mem.Save(ctx, backend.Handle{Kind: backend.Manifest, Name: id}, h.Manifest)
	}
	var out []candidate
	for _, mem := range mems {
		r, err := repo.Open(ctx, mem, o.Key)
		if err != nil {
			notes = append(notes, fmt.Sprintf("erasure: %v", err))
			continue
		}
		ms, err := r.Resolve(ctx, o.Ref)
		if err != nil {
			continue
		}
		for _, m := range ms {
			out = append(out, candidate{level: Erasure, m: m, frags: byID[m.ID()], where: nodesOf(bestSet(byID[m.ID()], m.ID()))})
		}
	}
	return out, notes, nil
}

func firstK(set []FragmentRef) int {
	if len(set) == 0 {
		return 0
	}
	return set[0].Header.K
}

func nodesOf(set []FragmentRef) string {
	var ns []string
	for _, r := range set {
		ns = append(ns, r.Node)
	}
	sort.Strings(ns)
	return "fragments on " + strings.Join(ns, ",")
}

func materialize(ctx context.Context, o RecoverOptions, c candidate) (*Result, error) {
	res := &Result{Level: c.level, Where: c.where, Manifest: c.m}
	switch c.level {
	case Local:
		return res, nil
	case Erasure:
		_, st, err := Decode(ctx, c.frags, c.m.ID(), o.Target)
		res.Decode = &st
		if err != nil {
			return nil, err
		}
		res.Where = "fragments on " + strings.Join(sortedCopy(st.Nodes), ",")
		dst, err := repo.Open(ctx, o.Target, o.Key)
		if err != nil {
			return nil, err
		}
		m, err := dst.Load(ctx, c.m.ID())
		if err != nil {
			return nil, err
		}
		if err := dst.Verify(ctx, m, nil); err != nil {
			return nil, fmt.Errorf("rebuilt checkpoint does not verify: %w", err)
		}
		res.Manifest = m
		return res, nil
	default: // partner, durable: a checked copy
		if err := copyConfig(ctx, c.src.Backend(), o.Target); err != nil {
			return nil, err
		}
		dst, err := repo.Open(ctx, o.Target, o.Key)
		if err != nil {
			return nil, err
		}
		m, _, err := c.src.CopyTo(ctx, c.m, dst, nil)
		if err != nil {
			return nil, err
		}
		res.Manifest = m
		return res, nil
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
