package container

import (
	"strings"
	"testing"
)

func TestParseVeth(t *testing.T) {
	v, err := ParseVeth("web", "10.200.0.1/24, 10.200.0.2/24")
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "eth0" || !v.Veth || !strings.HasPrefix(v.Peer, "ckpt-") || len(v.Peer) > 15 ||
		v.Addrs[0] != "10.200.0.2/24" || v.PeerAddrs[0] != "10.200.0.1/24" {
		t.Fatalf("%+v", v)
	}
	if w, _ := ParseVeth("db", "10.200.0.1/24,10.200.0.2/24"); w.Peer == v.Peer {
		t.Fatalf("two containers got the same host end name %s", v.Peer)
	}
	for _, bad := range []struct{ spec, want string }{
		{"10.200.0.1/24", "want HOST_CIDR,CONTAINER_CIDR"},
		{"10.200.0.1,10.200.0.2/24", "host address"},
		{"10.200.0.1/24,fe80::zz/64", "container address"},
		{"10.200.0.1/24,10.200.0.1/24", "different addresses"},
	} {
		if _, err := ParseVeth("x", bad.spec); err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), bad.spec) {
			t.Errorf("--veth %q: %v, want an error about %q", bad.spec, err, bad.want)
		}
	}
}
