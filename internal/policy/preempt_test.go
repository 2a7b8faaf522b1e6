package policy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestPreemptGCE plays GCE's instance/preempted endpoint.
func TestPreemptGCE(t *testing.T) {
	var preempted atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/preempted" {
			http.Error(w, "bad request", http.StatusForbidden)
			return
		}
		if preempted.Load() {
			w.Write([]byte("TRUE"))
		} else {
			w.Write([]byte("FALSE"))
		}
	}))
	defer srv.Close()
	p := &Preempt{URL: srv.URL + "/computeMetadata/v1/instance/preempted"}
	ctx := context.Background()
	if _, ok, err := p.Check(ctx); ok || err != nil {
		t.Fatalf("FALSE read as a notice: %v %v", ok, err)
	}
	preempted.Store(true)
	if n, ok, err := p.Check(ctx); !ok || err != nil {
		t.Fatalf("TRUE not read as a notice: %q %v %v", n, ok, err)
	}
}

// TestPreemptAWS plays AWS's spot instance-action endpoint with IMDSv2
// tokens: 401 without a token, 404 while there is no action.
func TestPreemptAWS(t *testing.T) {
	var action atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "no ttl", http.StatusBadRequest)
				return
			}
			w.Write([]byte("tok123"))
		case r.Header.Get("X-aws-ec2-metadata-token") != "tok123":
			http.Error(w, "", http.StatusUnauthorized)
		case !action.Load():
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"action": "terminate", "time": "2026-11-24T08:22:00Z"}`))
		}
	}))
	defer srv.Close()
	p := &Preempt{URL: srv.URL + "/latest/meta-data/spot/instance-action", Every: 5 * time.Millisecond}
	if _, ok, err := p.Check(context.Background()); ok || err != nil {
		t.Fatalf("404 read as a notice: %v %v", ok, err)
	}
	if p.token != "tok123" {
		t.Fatalf("IMDSv2 token not fetched: %q", p.token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch := p.Watch(ctx, t.Logf)
	action.Store(true)
	select {
	case n := <-ch:
		if n != "instance action terminate at 2026-11-24T08:22:00Z" {
			t.Fatalf("notice %q", n)
		}
	case <-ctx.Done():
		t.Fatal("no notice from Watch")
	}
}

func TestParseNotice(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{"TRUE\n", true}, {"true", true}, {"FALSE", false}, {"", false}, {"<html>", false},
		{`{"action":"stop","time":"x"}`, true}, {`{"Events":[]}`, false},
		{`{"DocumentIncarnation":1,"Events":[{"EventType":"Reboot"}]}`, false},
		{`{"DocumentIncarnation":2,"Events":[{"EventType":"Preempt","NotBefore":"Mon, 19 Sep 2016 18:29:47 GMT"}]}`, true},
		{`{not json`, false},
	} {
		if _, ok, _ := parseNotice([]byte(c.body)); ok != c.ok {
			t.Errorf("parseNotice(%q) = %v, want %v", c.body, ok, c.ok)
		}
	}
}

func TestPreemptUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	p := &Preempt{URL: u}
	if _, ok, err := p.Check(context.Background()); ok || err == nil {
		t.Fatalf("a closed server should give an error, not a notice: %v %v", ok, err)
	}
}
