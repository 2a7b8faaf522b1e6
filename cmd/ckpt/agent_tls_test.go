package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
)

// testPKI writes a CA and two certificates it signs, for 127.0.0.1 (the
// agents') and for a client, as PEM files in dir.
func testPKI(t *testing.T, dir string) backend.AgentTLS {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ckpt test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	issue := func(name string, serial int64) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	cert, key := issue("agent", 2)
	return backend.AgentTLS{CAFile: write("ca.pem", "CERTIFICATE", caDER), CertFile: cert, KeyFile: key}
}

// TestAgentMutualTLS: two agents with TLS; the API requires a client
// certificate their CA signed. A client without TLS, or with the CA but no
// certificate, is refused with a message that says what to set; with
// both, ckpt cp puts a checkpoint on the node, the node copies it to its
// partner over TLS with its own certificate, and after the node is lost
// ckpt fetch gets it back from the partner.
func TestAgentMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki := testPKI(t, dir)
	procs := startAgents(t, 2, map[string]any{"partner": map[string]any{"every": 1}},
		map[string]any{"tls": pki})
	loc := "agent://" + procs[0].addr + "/sim"
	tlsEnv := []string{
		backend.AgentTokenEnv + "=" + agentTok,
		backend.AgentCAEnv + "=" + pki.CAFile,
		backend.AgentCertEnv + "=" + pki.CertFile,
		backend.AgentKeyEnv + "=" + pki.KeyFile,
	}

	// A checkpoint in a local repository, to copy to the agent.
	local := filepath.Join(dir, "local")
	j, err := ckpt.Open("job", ckpt.WithLocation(local))
	if err != nil {
		t.Fatal(err)
	}
	state := make([]byte, 2<<20)
	fillRandom(state, 4, 4)
	j.Protect("state", state)
	if err := j.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	info, _ := j.LastCommit()

	res := runCkptEnv(t, loc, []string{backend.AgentTokenEnv + "=" + agentTok}, "ls")
	if res.code != exitFailed || !strings.Contains(res.stderr, "uses TLS") {
		t.Fatalf("plain HTTP to a TLS agent: exit %d: %s", res.code, res.stderr)
	}
	res = runCkptEnv(t, loc, []string{backend.AgentTokenEnv + "=" + agentTok, backend.AgentCAEnv + "=" + pki.CAFile}, "ls")
	if res.code != exitFailed || !strings.Contains(res.stderr, "requires a client certificate") {
		t.Fatalf("TLS without a client certificate: exit %d: %s", res.code, res.stderr)
	}
	wantCode(t, runCkptEnv(t, local, tlsEnv, "cp", "job", "--to", loc), exitOK, "cp to the agent over mTLS")

	// Wait for the partner copy with a client of this process.
	cfg, err := pki.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	backend.UseAgentTLS(cfg)
	t.Cleanup(func() { backend.UseAgentTLS(nil) })
	n0 := agentClient(t, procs[0])
	if n, err := n0.WaitIdle(context.Background(), 30*time.Second); err != nil || n != 0 {
		t.Fatalf("flush: %d %v", n, err)
	}
	if r, err := levels.LoadRecord(context.Background(), n0, info.ID, levels.Partner); err != nil || !r.Complete {
		t.Fatalf("partner copy over TLS: %+v %v", r, err)
	}

	procs[0].kill()
	os.RemoveAll(procs[0].dir)
	procs[0].start(t)
	res = runCkptEnv(t, loc, tlsEnv, "fetch", "job", "--from", loc, "--json")
	wantCode(t, res, exitOK, "fetch over mTLS")
	if !strings.Contains(res.stdout, `"level": "partner"`) || !strings.Contains(res.stdout, info.ID) {
		t.Fatalf("fetch: %s", res.stdout)
	}
}
