package httpserve

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mobiked/mobiked/internal/httpserve/httpservetest"
)

func TestHardenSetsLimits(t *testing.T) {
	var srv http.Server
	Harden(&srv, httpservetest.NewPipeListener(), Limits{Idle: time.Second})
	if srv.IdleTimeout != time.Second || srv.ReadTimeout != 10*time.Second || srv.WriteTimeout != 30*time.Second ||
		srv.ReadHeaderTimeout != 5*time.Second || srv.MaxHeaderBytes != 64<<10 {
		t.Fatalf("server limits: idle %s read %s write %s header %s, %d header octets", srv.IdleTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
}

// TestHardenConnLimit: the wrapped listener accepts MaxConns at once; the
// next one is accepted when one closes.
func TestHardenConnLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pl := httpservetest.NewPipeListener()
		var srv http.Server
		ln := Harden(&srv, pl, Limits{MaxConns: 2})
		accepted := make(chan struct{}, 3)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- struct{}{}
				go func() { c.Read(make([]byte, 1)); c.Close() }()
			}
		}()
		ctx := context.Background()
		c1, _ := pl.Dial(ctx)
		c2, _ := pl.Dial(ctx)
		defer c2.Close()
		dialed := make(chan struct{})
		go func() {
			c3, _ := pl.Dial(ctx)
			defer c3.Close()
			close(dialed)
		}()
		synctest.Wait()
		if len(accepted) != 2 {
			t.Fatalf("%d accepted, want 2", len(accepted))
		}
		c1.Close()
		synctest.Wait()
		<-dialed
		if len(accepted) != 3 {
			t.Fatalf("%d accepted after one closed, want 3", len(accepted))
		}
		ln.Close()
	})
}
