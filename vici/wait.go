package vici

import (
	"context"
	"errors"
	"fmt"

	"github.com/mobiked/mobiked/mobike"
)

// ErrEventsClosed is returned when the event channel closes while waiting.
var ErrEventsClosed = errors.New("vici: events closed")

// WaitIKEUpdate reads evs until an ike-update of connection conn (any
// connection when conn is "") shows the SA on pair p (addresses only; ports
// are ignored). Other events are handed to skipped when it is not nil. It is
// a test and tooling helper: the core confirms steers itself.
func WaitIKEUpdate(ctx context.Context, evs <-chan mobike.Event, conn string, p mobike.Pair, skipped func(mobike.Event)) (mobike.EvIKEUpdate, error) {
	for {
		select {
		case <-ctx.Done():
			return mobike.EvIKEUpdate{}, fmt.Errorf("vici: wait for ike-update to %s: %w", p, ctx.Err())
		case ev, ok := <-evs:
			if !ok {
				return mobike.EvIKEUpdate{}, fmt.Errorf("vici: wait for ike-update to %s: %w", p, ErrEventsClosed)
			}
			if u, isUpd := ev.(mobike.EvIKEUpdate); isUpd && (conn == "" || u.Conn == conn) &&
				u.NewLocal.Addr() == p.Local && u.NewRemote.Addr() == p.Remote {
				return u, nil
			}
			if skipped != nil {
				skipped(ev)
			}
		}
	}
}
