package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/internal/conform"
	"github.com/mobiked/mobiked/internal/ikeudp"
	"github.com/mobiked/mobiked/mobike/ike"
	"github.com/mobiked/mobiked/mobike/wire"
)

var updateCapture = flag.Bool("update-charon-capture", false,
	"rewrite mobike/ike/testdata/charon-5.9.8.json from the lab run")

// TestLabConform runs `mobike-lab conform` from mn against the lab's real
// charon 5.9.8 over both uplinks (NAT on b) and both gateway addresses:
// every MUST check passes; NO_NATS_ALLOWED (a SHOULD) fails because charon
// does not check it, and the report says so. A second, in-process run keeps
// the key derivation inputs: the test derives the keys on its own and
// decrypts charon's IKE_AUTH response (its identity, its AUTH under the lab
// key, MOBIKE_SUPPORTED, its second address). charon's log confirms it
// authenticated the peer and moved the SA through the NAT; mn's own SA is
// untouched and the gateway keeps no conformance SA.
func TestLabConform(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name = "mlconf"
	l, err := lab.Up(ctx, lab.Options{Name: name, NATB: true})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), name) })
	before, err := l.SA(ctx)
	if err != nil {
		t.Fatal(err)
	}

	jsonPath := filepath.Join(t.TempDir(), "conform.json")
	var out, errb bytes.Buffer
	start := time.Now()
	code := run([]string{"conform", "--name", name, "--json", jsonPath}, &out, &errb)
	t.Logf("mobike-lab conform (%s):\n%s%s", time.Since(start).Round(time.Millisecond), out.String(), errb.String())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep conform.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Peer != lab.GWAddr1.String() || len(rep.Checks) != len(conform.Specs) {
		t.Fatalf("report %+v", rep)
	}
	for _, c := range rep.Checks {
		if c.Level == conform.MUST && c.Status != conform.Pass {
			t.Errorf("MUST %s: %s %s", c.ID, c.Status, c.Detail)
		}
	}
	for id, want := range map[string]string{
		conform.IDAddressList: "10.4.0.2",
		conform.IDRR:          "4/4 pairs",
		conform.IDUpdateNAT:   "NAT",
		conform.IDRetransmit:  "identical",
	} {
		if c, _ := rep.Check(id); c.Status != conform.Pass || !strings.Contains(c.Detail, want) {
			t.Errorf("%s: %s %q, want PASS with %q", id, c.Status, c.Detail, want)
		}
	}
	if c, _ := rep.Check(conform.IDNoNATs); c.Status != conform.Fail || !strings.Contains(c.Detail, "not checked") {
		t.Errorf("no-nats-allowed: %s %q; charon 5.9.8 does not check NO_NATS_ALLOWED (docs/conformance.md)", c.Status, c.Detail)
	}

	// Decrypted-message interop, keys derived here from the run's inputs.
	cargs, err := conformArgs(l)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := conform.ParseArgs(cargs, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := conformListen(l)(ikeudp.Config{Locals: opts.Locals})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cbc := ike.Suite{Encr: wire.EncrAESCBC, KeyBits: 256, Integ: wire.IntegSHA256, PRF: wire.PRFHMACSHA256, Group: wire.DHECP256}
	for _, tc := range []struct {
		file  string
		props []wire.Proposal
		child ike.ChildMode
		suite string
		want  string
	}{
		// the default offer: charon picks AES-GCM-16 with Curve25519 and
		// announces childless support
		{"charon-5.9.8.json", nil, ike.ChildAuto, "aes128gcm16-prfsha256-x25519", "childless"},
		// CBC with HMAC-SHA2-256-128 and ECP-256: the Curve25519 key share
		// draws INVALID_KE_PAYLOAD first
		{"charon-5.9.8-cbc-ecp256.json", []wire.Proposal{ike.Proposal(cbc)}, ike.ChildAuto, "aes256-sha256-prfsha256-ecp256", "1 IKE_SA_INIT retries"},
		// a CHILD_SA proposal in IKE_AUTH (charon installs it, the tool does not)
		{"", nil, ike.ChildAlways, "aes128gcm16-prfsha256-x25519", "CHILD_SA accepted"},
	} {
		res, err := conform.Run(ctx, conform.Config{Peers: opts.Peers[:1], Locals: opts.Locals[:1], PSK: opts.PSK, ID: opts.ID,
			Proposals: tc.props, Child: tc.child, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := res.Report.Check(conform.IDNegotiated); c.Status != conform.Pass || len(res.SAs) == 0 || !strings.Contains(c.Detail, tc.want) {
			t.Fatalf("%s: %s %s, want PASS with %q", tc.suite, c.Status, c.Detail, tc.want)
		}
		rec := res.SAs[0]
		if got := rec.Secrets.Suite.String(); got != tc.suite {
			t.Errorf("negotiated %s, want %s", got, tc.suite)
		}
		checkCharonIKEAuth(t, rec)
		if *updateCapture && tc.file != "" {
			writeCapture(t, tc.file, rec)
		}
	}

	// charon's side.
	log, err := os.ReadFile(l.CharonLog("gw"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"authentication of '" + lab.ConformID + "' with pre-shared key successful",
		"remote endpoint changed from 10.1.0.2", // the update from uplink b
		"received retransmit of request with ID",
	} {
		if !bytes.Contains(log, []byte(line)) {
			t.Errorf("gw charon log lacks %q", line)
		}
	}
	gwSAs, err := l.ListSAs(ctx, "gw")
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range gwSAs {
		if sa.Conn != "lab" {
			t.Errorf("gateway keeps SA %+v", sa)
		}
	}
	after, err := l.SA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.UniqueID != before.UniqueID || after.State != "ESTABLISHED" || after.LocalHost != before.LocalHost || after.RemoteHost != before.RemoteHost {
		t.Errorf("mn's SA changed: %+v -> %+v", before, after)
	}
	if res, err := l.Ping(ctx, 10, 10*time.Millisecond); err != nil || res.Received < 9 {
		t.Errorf("tunnel ping after the run: %+v, %v", res, err)
	}
}

// checkCharonIKEAuth derives the IKE SA keys from the recorded inputs and
// decrypts charon's IKE_AUTH response.
func checkCharonIKEAuth(t *testing.T, rec conform.SARecord) {
	t.Helper()
	s := rec.Secrets
	initResp, err := wire.Parse(s.InitResp)
	if err != nil {
		t.Fatal(err)
	}
	r, err := wire.ParseInitResponse(initResp)
	if err != nil || !r.Accepted() || !bytes.Equal(r.Nonce, s.Nr) {
		t.Fatalf("IKE_SA_INIT response: %v %v", r, err)
	}
	ks, err := ike.KeyShareFrom(s.Suite.Group, s.Priv)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := ks.Shared(r.KE.Data)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ike.DeriveKeys(s.Suite, s.Ni, s.Nr, shared, s.SPIi, s.SPIr)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ike.NewSK(s.Suite, keys.ER, keys.AR)
	if err != nil {
		t.Fatal(err)
	}
	var resp *wire.Message
	for _, d := range rec.Datagrams {
		if h, err := wire.PeekHeader(d.Data); err == nil && !d.Out && h.Exchange == wire.ExchangeIKEAuth {
			if resp, err = in.Open(d.Data); err != nil {
				t.Fatalf("decrypt charon's IKE_AUTH response: %v", err)
			}
			break
		}
	}
	if resp == nil {
		t.Fatal("no IKE_AUTH response captured")
	}
	t.Logf("charon's IKE_AUTH response, decrypted: %s", resp)
	var idr, auth *wire.Raw
	for _, p := range resp.Payloads {
		if q, ok := p.(*wire.Raw); ok {
			switch q.Kind {
			case wire.PayloadIDr:
				idr = q
			case wire.PayloadAUTH:
				auth = q
			}
		}
	}
	if idr == nil || auth == nil {
		t.Fatal("no IDr/AUTH")
	}
	id, err := ike.ParseIDPayload(idr.Body)
	if err != nil || id.String() != "gw@lab" {
		t.Errorf("IDr %v %v", id, err)
	}
	if err := ike.VerifyPSKAuth(auth.Body, ike.PSKAuth([]byte(lab.PSK), s.InitResp, s.Ni, keys.PR, id)); err != nil {
		t.Errorf("charon's AUTH: %v", err)
	}
	if resp.Notify(wire.NotifyMOBIKESupported) == nil {
		t.Error("no MOBIKE_SUPPORTED")
	}
	found := false
	for _, n := range resp.Notifies() {
		if a, err := n.Address(); err == nil && a == lab.GWAddr2 {
			found = true
		}
	}
	if !found {
		t.Errorf("charon did not announce %s", lab.GWAddr2)
	}
}

// writeCapture stores the run's inputs and datagrams as the offline
// fixture of mobike/ike (TestCharonCapture).
func writeCapture(t *testing.T, file string, rec conform.SARecord) {
	t.Helper()
	type dg struct {
		Out  bool   `json:"out"`
		Data string `json:"data"`
	}
	s := rec.Secrets
	c := struct {
		Charon    string `json:"charon"`
		PSK       string `json:"psk"`
		Suite     string `json:"suite"`
		Group     int    `json:"group"`
		Priv      string `json:"priv"`
		Ni        string `json:"ni"`
		Nr        string `json:"nr"`
		Datagrams []dg   `json:"datagrams"`
	}{Charon: "5.9.8", PSK: lab.PSK, Suite: s.Suite.String(), Group: int(s.Suite.Group),
		Priv: hex.EncodeToString(s.Priv), Ni: hex.EncodeToString(s.Ni), Nr: hex.EncodeToString(s.Nr)}
	for _, d := range rec.Datagrams {
		c.Datagrams = append(c.Datagrams, dg{Out: d.Out, Data: hex.EncodeToString(d.Data)})
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("../../mobike/ike/testdata", file), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
