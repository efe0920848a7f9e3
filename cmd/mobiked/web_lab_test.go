package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// webConfigFixture writes a self-signed certificate for 127.0.0.1, its key
// and an exporter-toolkit web config (TLS with them, basic auth for user
// with password) into dir, and returns the config's path and the
// certificate.
func webConfigFixture(t *testing.T, dir, user, password string) (string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "mobiked metrics (test)"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"metrics.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"metrics.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		// Relative paths are relative to the web config's directory.
		"web.yml": []byte("tls_server_config:\n  cert_file: metrics.crt\n  key_file: metrics.key\n" +
			"basic_auth_users:\n  " + user + ": " + string(hash) + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "web.yml"), cert
}

// testWebConfigAndJSONLog restarts the rig's mobiked with --web.config.file
// (TLS and basic auth) and --log-format json, then checks on the real
// listener in mn: the TLS handshake presents the configured certificate, a
// request without or with wrong credentials gets 401, with the right ones
// 200 and the metrics, plain HTTP gets no metrics; and every line the
// daemon logged since the restart is one JSON object with time, level and
// msg and no key twice, including exporter-toolkit's and net/http's lines.
func testWebConfigAndJSONLog(t *testing.T, ctx context.Context, r *labRig) {
	const user, password = "prometheus", "s3cret metrics"
	web, cert := webConfigFixture(t, t.TempDir(), user, password)
	l := r.l
	if err := l.StopMobiked(); err != nil {
		t.Fatal(err)
	}
	logStart := int64(0)
	if fi, err := os.Stat(l.MobikedLog()); err == nil {
		logStart = fi.Size()
	}
	if _, err := l.StartMobikedArgs(ctx, r.bin, r.cfg, []string{"--web.config.file", web, "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	trusting := &tls.Config{RootCAs: roots}
	get := func(scheme string, conf *tls.Config, auth func(*http.Request)) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://127.0.0.1:9816/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != nil {
			auth(req)
		}
		return l.MobikedDo(ctx, req, conf)
	}
	withAuth := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }

	// The listener starts just after the control socket.
	var resp *http.Response
	var body []byte
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if resp, body, err = get("https", trusting, withAuth(user, password)); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("https with credentials: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("mobike_build_info")) {
		t.Errorf("https with credentials: %s, want 200 and the metrics:\n%.300s", resp.Status, body)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || !resp.TLS.PeerCertificates[0].Equal(cert) {
		t.Errorf("TLS handshake did not present the configured certificate (state %+v)", resp.TLS)
	}
	for name, auth := range map[string]func(*http.Request){
		"no credentials": nil,
		"wrong password": withAuth(user, "wrong"),
		"unknown user":   withAuth("root", password),
		"empty password": withAuth(user, ""),
		"swapped":        withAuth(password, user),
	} {
		resp, body, err := get("https", trusting, auth)
		if err != nil {
			t.Errorf("https, %s: %v", name, err)
			continue
		}
		if resp.StatusCode != http.StatusUnauthorized || bytes.Contains(body, []byte("mobike_")) {
			t.Errorf("https, %s: %s, want 401 and no metrics:\n%.300s", name, resp.Status, body)
		}
	}
	// Plain HTTP on the TLS listener: net/http's 400, no metrics.
	if resp, body, err := get("http", nil, withAuth(user, password)); err != nil || resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("mobike_")) {
		t.Errorf("plain http with credentials: %v %v, want 400 and no metrics:\n%.300s", err, resp, body)
	}
	// A client that does not trust the certificate fails the handshake (and
	// the server logs the failed handshake through its ErrorLog).
	if _, _, err := get("https", &tls.Config{RootCAs: x509.NewCertPool()}, withAuth(user, password)); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("https with an empty trust store: %v, want a certificate error", err)
	}

	// The log since the restart: one JSON object a line.
	want := map[string]func(map[string]any) bool{
		"exporter-toolkit's TLS line": func(o map[string]any) bool {
			return o["msg"] == "TLS is enabled." && o["component"] == "metrics-listener" && o["address"] == "127.0.0.1:9816"
		},
		"net/http's handshake error": func(o map[string]any) bool {
			m, _ := o["msg"].(string)
			return strings.Contains(m, "TLS handshake error") && o["level"] == "DEBUG"
		},
		"a vici line": func(o map[string]any) bool { return o["component"] == "vici" },
	}
	found := func(lines []string) map[string]bool {
		f := map[string]bool{}
		for _, line := range lines {
			var o map[string]any
			if json.Unmarshal([]byte(line), &o) != nil {
				continue
			}
			for what, ok := range want {
				f[what] = f[what] || ok(o)
			}
		}
		return f
	}
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, err := os.ReadFile(l.MobikedLog())
		if err != nil {
			t.Fatal(err)
		}
		lines = completeLines(b[min(logStart, int64(len(b))):])
		if len(found(lines)) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(lines) < 5 {
		t.Fatalf("only %d log lines since the restart:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	levels := map[string]bool{"DEBUG": true, "INFO": true, "WARN": true, "ERROR": true}
	for i, line := range lines {
		o, err := logObject(line)
		if err != nil {
			t.Errorf("log line %d: %v", i+1, err)
			continue
		}
		ts, _ := o["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("log line %d: time %q: %v", i+1, o["time"], err)
		}
		if lv, _ := o["level"].(string); !levels[lv] {
			t.Errorf("log line %d: level %q", i+1, o["level"])
		}
		if m, _ := o["msg"].(string); m == "" {
			t.Errorf("log line %d: no msg: %s", i+1, line)
		}
	}
	f := found(lines)
	for what := range want {
		if !f[what] {
			t.Errorf("no log line for %s among %d:\n%s", what, len(lines), strings.Join(lines, "\n"))
		}
	}
	t.Logf("%d JSON log lines since the restart; first: %s", len(lines), lines[0])
}

// completeLines splits b into its newline-terminated lines (a line still
// being written is left out).
func completeLines(b []byte) []string {
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(string(b[:i]), "\n")
}
