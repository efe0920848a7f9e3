package conform

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Level is the RFC 2119 requirement level of a check.
type Level uint8

const (
	MUST Level = iota + 1
	SHOULD
	MAY
)

func (l Level) String() string {
	switch l {
	case MUST:
		return "MUST"
	case SHOULD:
		return "SHOULD"
	case MAY:
		return "MAY"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// MarshalText writes the level's name.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level's name.
func (l *Level) UnmarshalText(b []byte) error {
	for _, x := range []Level{MUST, SHOULD, MAY} {
		if x.String() == string(b) {
			*l = x
			return nil
		}
	}
	return fmt.Errorf("conform: unknown level %q", b)
}

// Status is a check's outcome.
type Status uint8

const (
	// Pass: the gateway did what the requirement asks.
	Pass Status = iota + 1
	// Fail: it did something else (or did not answer).
	Fail
	// Unsupported: it does not implement the feature the check needs.
	Unsupported
	// Skipped: the check could not run here (an earlier step failed, or the
	// invocation lacks what it needs: a second local address, a NAT).
	Skipped
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "PASS"
	case Fail:
		return "FAIL"
	case Unsupported:
		return "UNSUPPORTED"
	case Skipped:
		return "SKIPPED"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the status's name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a status's name.
func (s *Status) UnmarshalText(b []byte) error {
	for _, x := range []Status{Pass, Fail, Unsupported, Skipped} {
		if x.String() == string(b) {
			*s = x
			return nil
		}
	}
	return fmt.Errorf("conform: unknown status %q", b)
}

// Check is one line of the report.
type Check struct {
	ID      string `json:"id"`
	Section string `json:"section"`
	Level   Level  `json:"level"`
	Status  Status `json:"status"`
	Detail  string `json:"detail"`
}

// Report is the outcome of a run; its JSON form is the tool's --json output.
type Report struct {
	Peer   string  `json:"peer"`
	Checks []Check `json:"checks"`
}

// Passed reports whether every MUST check that ran passed: a MUST check
// that failed or found the feature unsupported fails the run; one that was
// skipped because the invocation lacks what it needs (a second local
// address, a NAT) does not, and the summary counts it.
func (r *Report) Passed() bool {
	for _, c := range r.Checks {
		if c.Level == MUST && (c.Status == Fail || c.Status == Unsupported) {
			return false
		}
	}
	return true
}

// Check returns the check with id.
func (r *Report) Check(id string) (Check, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the human table and a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CHECK\tSECTION\tLEVEL\tSTATUS\tDETAIL\n")
	counts := map[Status]int{}
	skippedMust := 0
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Section, c.Level, c.Status, c.Detail)
		counts[c.Status]++
		if c.Level == MUST && c.Status == Skipped {
			skippedMust++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "every MUST passed"
	if !r.Passed() {
		var bad []string
		for _, c := range r.Checks {
			if c.Level == MUST && (c.Status == Fail || c.Status == Unsupported) {
				bad = append(bad, c.ID)
			}
		}
		verdict = "MUST not met: " + strings.Join(bad, ", ")
	}
	if skippedMust > 0 {
		verdict += fmt.Sprintf(" (%d MUST skipped)", skippedMust)
	}
	_, err := fmt.Fprintf(w, "\n%s: %d pass, %d fail, %d unsupported, %d skipped; %s\n",
		r.Peer, counts[Pass], counts[Fail], counts[Unsupported], counts[Skipped], verdict)
	return err
}
