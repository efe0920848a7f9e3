// Command mobike-conform checks that an IKEv2 gateway implements MOBIKE
// (RFC 4555): it establishes an IKE SA with a pre-shared key as a pure-Go
// initiator (mobike/proto driving the exchanges, mobike/ike the
// cryptography), then tests the gateway's address updates from each uplink,
// return-routability answers and address lists. See internal/conform and
// docs/conformance.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mobiked/mobiked/cmd/internal/buildinfo"
	"github.com/mobiked/mobiked/internal/conform"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Printf("mobike-conform %s\n", buildinfo.Read())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, _ := conform.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, conform.Env{})
	stop()
	os.Exit(code)
}
