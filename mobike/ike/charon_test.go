package ike

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mobiked/mobiked/mobike/wire"
)

// capture is a conformance run against the lab's charon 5.9.8 with the
// initiator's secrets (written by `go test ./cmd/mobike-lab -run
// TestLabConform -update-charon-capture`).
type capture struct {
	Charon    string `json:"charon"`
	PSK       string `json:"psk"`
	Suite     string `json:"suite"`
	Group     int    `json:"group"`
	Priv      string `json:"priv"`
	Ni        string `json:"ni"`
	Nr        string `json:"nr"`
	Datagrams []struct {
		Out  bool   `json:"out"`
		Data string `json:"data"`
	} `json:"datagrams"`
}

// TestCharonCapture redoes the key derivation of real exchanges with charon
// 5.9.8 and decrypts every message of them in both directions: the IKE
// SA_INIT response's accepted proposal and key share, both AUTH payloads
// (RFC 7296 §2.15), and every INFORMATIONAL. It pins interop of the whole
// chain (DH, SKEYSEED, prf+, SK payload with AES-GCM-16 and with AES-CBC +
// HMAC-SHA2-256-128) without the lab.
func TestCharonCapture(t *testing.T) {
	files, _ := filepath.Glob("testdata/charon-*.json")
	if len(files) < 2 {
		t.Fatalf("captures missing: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c capture
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			raw := make([][]byte, len(c.Datagrams))
			for i, d := range c.Datagrams {
				raw[i] = unhex(t, d.Data)
			}
			// The last IKE_SA_INIT exchange is the accepted one (an
			// INVALID_KE_PAYLOAD round may come first).
			var req, resp []byte
			for i, d := range c.Datagrams {
				if h, err := wire.PeekHeader(raw[i]); err == nil && h.Exchange == wire.ExchangeIKESAInit {
					if d.Out {
						req = raw[i]
					} else {
						resp = raw[i]
					}
				}
			}
			rm, err := wire.Parse(resp)
			if err != nil {
				t.Fatal(err)
			}
			r, err := wire.ParseInitResponse(rm)
			if err != nil || !r.Accepted() {
				t.Fatalf("init response %v %v", r, err)
			}
			s, err := SuiteOf(*r.Proposal)
			if err != nil || s.String() != c.Suite {
				t.Fatalf("suite %s %v, captured %s", s, err, c.Suite)
			}
			ks, err := KeyShareFrom(wire.DHGroup(c.Group), unhex(t, c.Priv))
			if err != nil {
				t.Fatal(err)
			}
			shared, err := ks.Shared(r.KE.Data)
			if err != nil {
				t.Fatal(err)
			}
			ni, nr := unhex(t, c.Ni), unhex(t, c.Nr)
			keys, err := DeriveKeys(s, ni, nr, shared, rm.SPIi, rm.SPIr)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := NewSK(s, keys.EI, keys.AI)
			in, _ := NewSK(s, keys.ER, keys.AR)
			psk := []byte(c.PSK)
			opened := 0
			for i, d := range c.Datagrams {
				h, _ := wire.PeekHeader(raw[i])
				if h.Exchange == wire.ExchangeIKESAInit {
					continue
				}
				sk := in
				if d.Out {
					sk = out
				}
				m, err := sk.Open(raw[i])
				if err != nil {
					t.Fatalf("datagram %d (%s out=%t): %v", i, h.Exchange, d.Out, err)
				}
				opened++
				if h.Exchange != wire.ExchangeIKEAuth {
					continue
				}
				id, auth := idAuth(t, m, d.Out)
				if d.Out {
					if err := VerifyPSKAuth(auth, PSKAuth(psk, req, nr, keys.PI, id)); err != nil || id.String() != "conform.lab" {
						t.Errorf("our AUTH as %s: %v", id, err)
					}
					continue
				}
				if err := VerifyPSKAuth(auth, PSKAuth(psk, resp, ni, keys.PR, id)); err != nil || id.String() != "gw@lab" {
					t.Errorf("charon's AUTH as %s: %v", id, err)
				}
				if m.Notify(wire.NotifyMOBIKESupported) == nil {
					t.Error("charon's IKE_AUTH response without MOBIKE_SUPPORTED")
				}
			}
			if opened < 4 {
				t.Errorf("only %d protected messages", opened)
			}
		})
	}
}

func idAuth(t *testing.T, m *wire.Message, out bool) (ID, []byte) {
	t.Helper()
	want := wire.PayloadIDr
	if out {
		want = wire.PayloadIDi
	}
	var id ID
	var auth []byte
	for _, p := range m.Payloads {
		if r, ok := p.(*wire.Raw); ok {
			switch r.Kind {
			case want:
				var err error
				if id, err = ParseIDPayload(r.Body); err != nil {
					t.Fatal(err)
				}
			case wire.PayloadAUTH:
				auth = r.Body
			}
		}
	}
	if auth == nil {
		t.Fatalf("no AUTH in %s", m)
	}
	return id, auth
}
