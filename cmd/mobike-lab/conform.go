package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/internal/conform"
	"github.com/mobiked/mobiked/internal/ikeudp"
)

// conformListen opens mobike-conform's sockets inside the lab's client
// namespace mn (each socket keeps its namespace; the suite itself runs
// here).
func conformListen(l *lab.Lab) conform.ListenFunc {
	return func(c ikeudp.Config) (conform.Listener, error) {
		var t *ikeudp.Transport
		err := lab.InNetNS(l.NS("mn"), func() error {
			var err error
			t, err = ikeudp.Listen(c)
			return err
		})
		if err != nil {
			return nil, err
		}
		return t, nil
	}
}

// conformArgs is the mobike-conform command line against the lab gateway:
// both uplinks of mn, both gateway addresses, the lab key and the identity
// of the gateway's "conform" connection.
func conformArgs(l *lab.Lab) ([]string, error) {
	psk := filepath.Join(l.Dir, "conform.psk")
	if err := os.WriteFile(psk, []byte(lab.PSK+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("conform: %w", err)
	}
	return []string{
		"--peer", lab.GWAddr1.String(), "--peer", lab.GWAddr2.String(),
		"--local", lab.MNAddrA.String() + "," + lab.MNAddrB.String(),
		"--psk-file", psk, "--id", lab.ConformID,
	}, nil
}

// errConform is a conformance run in which a MUST check failed.
var errConform = errors.New("not every MUST check passed")

// cmdConform runs mobike-conform from mn against the lab gateway over both
// uplinks (NAT on b when the lab is up with --nat-b).
func cmdConform(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, name := newFlags("conform", stderr)
	jsonFile := fs.String("json", "", "also write the report as JSON to FILE")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := lab.Open(*name)
	if err != nil {
		return err
	}
	cargs, err := conformArgs(l)
	if err != nil {
		return err
	}
	code, rep := conform.Main(ctx, cargs, stdout, stderr, conform.Env{Listen: conformListen(l)})
	if rep != nil && *jsonFile != "" {
		f, err := os.Create(*jsonFile)
		if err != nil {
			return fmt.Errorf("conform: %w", err)
		}
		werr := rep.WriteJSON(f)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("conform: write %s: %w", *jsonFile, werr)
		}
	}
	switch {
	case code == 0:
		return nil
	case rep == nil:
		return errors.New("mobike-conform did not run")
	}
	return errConform
}
