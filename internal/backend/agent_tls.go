package backend

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
)

// AgentTLS names the files for TLS between agents and their clients. An
// agent with TLS serves HTTPS with CertFile and KeyFile, requires of
// every API request a client certificate that CAFile signed (mTLS), and
// presents the same certificate to its peers. A client (the library, the
// CLI) trusts the agents that CAFile signed and presents CertFile/KeyFile.
type AgentTLS struct {
	CAFile   string `json:"ca_file"`
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// Environment variables that give a client its TLS files: with
// CKPT_AGENT_CA set, agent:// locations are reached over TLS.
const (
	AgentCAEnv   = "CKPT_AGENT_CA"
	AgentCertEnv = "CKPT_AGENT_CERT"
	AgentKeyEnv  = "CKPT_AGENT_KEY"
)

func (t AgentTLS) load() (*x509.CertPool, []tls.Certificate, error) {
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent TLS: reading the CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("agent TLS: %s holds no PEM certificate", t.CAFile)
	}
	if t.CertFile == "" && t.KeyFile == "" {
		return pool, nil, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, nil, errors.New("agent TLS: a certificate needs both its file and its key file")
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent TLS: %w", err)
	}
	return pool, []tls.Certificate{cert}, nil
}

// ClientConfig is the TLS configuration of a client of agents.
func (t AgentTLS) ClientConfig() (*tls.Config, error) {
	pool, certs, err := t.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS13}, nil
}

// ServerConfig is the TLS configuration of an agent. Client certificates
// are checked when given and required by the API (not by /healthz and
// /metrics, so that monitoring needs only the CA).
func (t AgentTLS) ServerConfig() (*tls.Config, error) {
	pool, certs, err := t.load()
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("agent TLS: an agent needs cert_file and key_file")
	}
	return &tls.Config{Certificates: certs, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS13}, nil
}

// agentHTTP is how this process reaches agents.
type agentHTTP struct {
	scheme string
	client *http.Client
	err    error // a TLS setting from the environment that could not be used
}

var (
	agentConn    atomic.Pointer[agentHTTP]
	agentEnvOnce sync.Once
)

// UseAgentTLS makes this process reach agents over TLS with cfg (nil:
// plain HTTP). An agent sets it from its configuration; clients take it
// from CKPT_AGENT_CA, CKPT_AGENT_CERT and CKPT_AGENT_KEY.
func UseAgentTLS(cfg *tls.Config) {
	agentConn.Store(newAgentHTTP(cfg))
}

func newAgentHTTP(cfg *tls.Config) *agentHTTP {
	t := agentTransport.Clone()
	h := &agentHTTP{scheme: "http"}
	if cfg != nil {
		t.TLSClientConfig = cfg
		h.scheme = "https"
	}
	h.client = &http.Client{Transport: t}
	return h
}

func currentAgentHTTP() *agentHTTP {
	agentEnvOnce.Do(func() {
		// UseAgentTLS, when called first, wins over the environment.
		ca := os.Getenv(AgentCAEnv)
		if ca == "" {
			agentConn.CompareAndSwap(nil, newAgentHTTP(nil))
			return
		}
		cfg, err := AgentTLS{CAFile: ca, CertFile: os.Getenv(AgentCertEnv), KeyFile: os.Getenv(AgentKeyEnv)}.ClientConfig()
		h := newAgentHTTP(cfg)
		if err != nil {
			h.err = fmt.Errorf("%s: %w", AgentCAEnv, err)
		}
		agentConn.CompareAndSwap(nil, h)
	})
	return agentConn.Load()
}

// AgentHTTP returns the URL scheme and the HTTP client with which this
// process reaches agents (for requests outside a group's store API).
func AgentHTTP() (scheme string, c *http.Client, err error) {
	h := currentAgentHTTP()
	return h.scheme, h.client, h.err
}
