// Package control is the local control API between mobiked and mobikectl:
// JSON over HTTP on a unix socket (mode 0600). The daemon serves it, the CLI
// is its client; both share these types.
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DefaultSocket is where mobiked listens unless configured otherwise.
const DefaultSocket = "/run/mobiked/mobiked.sock"

// SARow is one IKE SA in `mobikectl status`.
type SARow struct {
	Conn      string    `json:"conn"`
	ID        uint32    `json:"id"`
	State     string    `json:"state"`
	Initiator bool      `json:"initiator"`
	Local     string    `json:"local"`
	Remote    string    `json:"remote"`
	Uplink    string    `json:"uplink"`
	Since     time.Time `json:"since,omitzero"`
	Steering  string    `json:"steering,omitempty"` // pair a pending steer targets
	Why       string    `json:"why"`
}

// Status is `mobikectl status`.
type Status struct {
	CharonUp bool      `json:"charon_up"`
	At       time.Time `json:"at"`
	SAs      []SARow   `json:"sas"`
}

// PathRow is one local×remote pair in `mobikectl paths`.
type PathRow struct {
	Local    string    `json:"local"`
	Remote   string    `json:"remote"`
	Uplink   string    `json:"uplink"`
	State    string    `json:"state"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since,omitzero"`
	RTTms    float64   `json:"rtt_ms"`
	Loss     float64   `json:"loss_ratio"`
	NAT      string    `json:"nat"`
	Method   string    `json:"method"`
	Profile  string    `json:"profile"`
	Sent     uint64    `json:"sent"`
	Received uint64    `json:"received"`
	Active   bool      `json:"active"`
	// BytesSent are the pair's probe octets (headers included); RTOms the
	// probe timeout it currently gets.
	BytesSent uint64  `json:"bytes_sent"`
	RTOms     float64 `json:"rto_ms"`
}

// Candidate is one ranked pair in `mobikectl explain`.
type Candidate struct {
	Rank     int     `json:"rank"`
	Local    string  `json:"local"`
	Remote   string  `json:"remote"`
	Uplink   string  `json:"uplink"`
	Eligible bool    `json:"eligible"`
	SLAMet   bool    `json:"sla_met"`
	State    string  `json:"state"`
	NAT      bool    `json:"nat"`
	RTTms    float64 `json:"rtt_ms"`
	Loss     float64 `json:"loss_ratio"`
	Current  bool    `json:"current"`
	Reason   string  `json:"reason"`
}

// Explain is `mobikectl explain CONN`.
type Explain struct {
	Conn     string `json:"conn"`
	Current  string `json:"current"`
	Decision string `json:"decision"`
	// Group is the connection's steering group (the connections whose peer
	// addresses overlap share one pair), GroupPair that pair, Lead the
	// member whose policy chose it, Conflict why it breaks this
	// connection's policy ("" = it does not).
	Group       string      `json:"group,omitempty"`
	Members     []string    `json:"members,omitempty"`
	GroupPair   string      `json:"group_pair,omitempty"`
	Lead        string      `json:"lead,omitempty"`
	Conflict    string      `json:"conflict,omitempty"`
	Prefer      string      `json:"prefer,omitempty"`
	PreferUntil time.Time   `json:"prefer_until,omitzero"`
	Peers       []string    `json:"peers"`
	Candidates  []Candidate `json:"candidates"`
}

// Routing is the routing state: what the core wants (Desired, generation
// Gen), what the steerer last applied (AppliedGen, Wanted) and what the
// kernel holds of mobiked's (Kernel, same rendering as Wanted). InSync: the
// latest state is applied and the kernel equals it.
type Routing struct {
	Gen        uint64   `json:"gen"`
	AppliedGen uint64   `json:"applied_gen"`
	Desired    []string `json:"desired"`
	Wanted     []string `json:"wanted"`
	Kernel     []string `json:"kernel"`
	InSync     bool     `json:"in_sync"`
}

// PreferRequest pins a connection to an uplink (empty Uplink clears).
type PreferRequest struct {
	Conn   string        `json:"conn"`
	Uplink string        `json:"uplink"`
	For    time.Duration `json:"for"`
}

// Event is one line of the decision trace (`mobikectl events`).
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	Text string    `json:"text"`
}

// CheckStatus is the verdict of one doctor check.
type CheckStatus string

// Check verdicts: a fail makes `mobikectl doctor` exit non-zero; a warning
// is shown but is not a problem mobiked cannot work with.
const (
	CheckOK   CheckStatus = "ok"
	CheckWarn CheckStatus = "warn"
	CheckFail CheckStatus = "fail"
)

// Check is one line of `mobikectl doctor`.
type Check struct {
	Name   string      `json:"name"`   // e.g. "vici", "charon-settings", "conn lab"
	Status CheckStatus `json:"status"` // ok, warn, fail
	Detail string      `json:"detail"` // what was found
	Hint   string      `json:"hint,omitempty"`
}

// Doctor is the result of `mobikectl doctor`: checks run inside mobiked, so
// they see what the daemon sees (its namespace, charon's socket, the kernel's
// rules and routes, its probe results).
type Doctor struct {
	At     time.Time `json:"at"`
	Checks []Check   `json:"checks"`
}

// Failed reports whether any check failed.
func (d Doctor) Failed() bool {
	for _, c := range d.Checks {
		if c.Status == CheckFail {
			return true
		}
	}
	return false
}

// Error is the body of a failed request.
type Error struct {
	Error string `json:"error"`
}

// Client talks to mobiked's control socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://mobiked"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: %s %s: is mobiked running (socket %s)? %w", method, path, c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return fmt.Errorf("%s", e.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("control: %s %s: decode: %w", method, path, err)
	}
	return nil
}

// Status fetches the SA table.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Paths fetches every pair.
func (c *Client) Paths(ctx context.Context) ([]PathRow, error) {
	var p []PathRow
	return p, c.do(ctx, "GET", "/v1/paths", nil, &p)
}

// Explain fetches the ranking of a connection.
func (c *Client) Explain(ctx context.Context, conn string) (Explain, error) {
	var e Explain
	return e, c.do(ctx, "GET", "/v1/explain?conn="+url.QueryEscape(conn), nil, &e)
}

// Routing fetches the routing state.
func (c *Client) Routing(ctx context.Context) (Routing, error) {
	var r Routing
	return r, c.do(ctx, "GET", "/v1/routing", nil, &r)
}

// Prefer pins (or with an empty uplink, unpins) a connection.
func (c *Client) Prefer(ctx context.Context, r PreferRequest) error {
	return c.do(ctx, "POST", "/v1/prefer", r, nil)
}

// Doctor runs mobiked's self-checks.
func (c *Client) Doctor(ctx context.Context) (Doctor, error) {
	var d Doctor
	return d, c.do(ctx, "GET", "/v1/doctor", nil, &d)
}

// Events streams the decision trace until ctx ends; fn gets each event.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://mobiked/v1/events", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: events: is mobiked running (socket %s)? %w", c.Socket, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err == nil {
			fn(ev)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
