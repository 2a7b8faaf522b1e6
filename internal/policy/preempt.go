package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultPreemptPoll is how often a preemption endpoint is polled. Cloud
// notices come 30 s (GCE) to 2 min (AWS spot) before the machine goes.
const DefaultPreemptPoll = 5 * time.Second

// Preempt polls a cloud metadata endpoint for a preemption notice. It
// understands, by the response:
//
//   - GCE (http://metadata.google.internal/computeMetadata/v1/instance/preempted):
//     200 with body TRUE is a notice, FALSE is none. The request carries
//     Metadata-Flavor: Google.
//   - AWS spot (http://169.254.169.254/latest/meta-data/spot/instance-action):
//     404 is none; 200 with a JSON object that has "action" (terminate, stop,
//     hibernate) is a notice. A 401 (IMDSv2) makes the poller get a session
//     token from /latest/api/token on the same host and retry with it.
//   - Azure scheduled events (http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01):
//     200 with {"Events":[...]} holding an event of type Preempt or Terminate
//     is a notice. The request carries Metadata: true.
//
// Any other response is no notice; a transport error is returned by Check
// and logged by Watch, which keeps polling.
type Preempt struct {
	URL    string
	Every  time.Duration // 0: DefaultPreemptPoll
	Client *http.Client  // nil: a client with a 2 s timeout

	token string // AWS IMDSv2 session token
}

func (p *Preempt) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return &http.Client{Timeout: 2 * time.Second}
}

// Check asks the endpoint once. It returns a description of the notice
// when there is one.
func (p *Preempt) Check(ctx context.Context) (notice string, ok bool, err error) {
	code, body, err := p.get(ctx)
	if err != nil {
		return "", false, err
	}
	if code == http.StatusUnauthorized {
		if err := p.fetchToken(ctx); err != nil {
			return "", false, err
		}
		if code, body, err = p.get(ctx); err != nil {
			return "", false, err
		}
	}
	if code != http.StatusOK {
		return "", false, nil
	}
	return parseNotice(body)
}

func parseNotice(body []byte) (string, bool, error) {
	b := bytes.TrimSpace(body)
	switch {
	case strings.EqualFold(string(b), "TRUE"):
		return "preempted (TRUE)", true, nil
	case len(b) == 0 || b[0] != '{':
		return "", false, nil
	}
	var v struct {
		Action string `json:"action"`
		Time   string `json:"time"`
		Events []struct {
			EventType string `json:"EventType"`
			NotBefore string `json:"NotBefore"`
		} `json:"Events"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", false, nil
	}
	if v.Action != "" {
		return fmt.Sprintf("instance action %s at %s", v.Action, v.Time), true, nil
	}
	for _, e := range v.Events {
		if e.EventType == "Preempt" || e.EventType == "Terminate" {
			return fmt.Sprintf("scheduled event %s not before %s", e.EventType, e.NotBefore), true, nil
		}
	}
	return "", false, nil
}

func (p *Preempt) get(ctx context.Context) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Metadata-Flavor", "Google")
	req.Header.Set("Metadata", "true")
	if p.token != "" {
		req.Header.Set("X-aws-ec2-metadata-token", p.token)
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

func (p *Preempt) fetchToken(ctx context.Context) error {
	u, err := url.Parse(p.URL)
	if err != nil {
		return err
	}
	u.Path, u.RawQuery = "/latest/api/token", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	resp, err := p.client().Do(req)
	if err != nil {
		return fmt.Errorf("getting an IMDSv2 token: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("getting an IMDSv2 token: %s", resp.Status)
	}
	p.token = strings.TrimSpace(string(b))
	return nil
}

// Watch polls until a notice comes or ctx ends. The channel receives the
// notice once; it is never closed. Errors go to logf (nil: dropped), once
// per run of consecutive errors.
func (p *Preempt) Watch(ctx context.Context, logf func(string, ...any)) <-chan string {
	ch := make(chan string, 1)
	every := p.Every
	if every <= 0 {
		every = DefaultPreemptPoll
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		failing := false
		for {
			notice, ok, err := p.Check(ctx)
			switch {
			case ok:
				ch <- notice
				return
			case err != nil && ctx.Err() == nil && !failing:
				if logf != nil {
					logf("warning: polling %s: %v", p.URL, err)
				}
				failing = true
			case err == nil:
				failing = false
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
