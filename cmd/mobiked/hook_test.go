package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/policy"
)

// writeHook writes an executable shell script.
func writeHook(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "on-move")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runHooks starts the runner and returns a channel of its results.
func runHooks(t *testing.T, h *hookRunner) <-chan error {
	t.Helper()
	res := make(chan error, 16)
	h.ran = func(_ MoveEvent, err error) { res <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return res
}

// TestHookEnvironment: the hook gets the move in MOBIKED_* variables.
func TestHookEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	hook := writeHook(t, "env | grep ^MOBIKED_ | sort > "+out+"\n")
	h := newHookRunner(slog.New(slog.DiscardHandler), policy.Hooks{OnMove: hook, Timeout: 5 * time.Second})
	res := runHooks(t, h)
	h.moved(MoveEvent{Conn: "office", Conns: []string{"office", "office2"}, Old: pair("10.1.0.2", "10.3.0.2"), New: pair("10.2.0.2", "10.4.0.2"),
		OldUplink: "eth0", Uplink: "eth1", Cause: "path-down", After: 104 * time.Millisecond})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := `MOBIKED_AFTER_MS=104
MOBIKED_CAUSE=path-down
MOBIKED_CONN=office
MOBIKED_CONNS=office office2
MOBIKED_EVENT=move
MOBIKED_NEW_LOCAL=10.2.0.2
MOBIKED_NEW_REMOTE=10.4.0.2
MOBIKED_OLD_LOCAL=10.1.0.2
MOBIKED_OLD_REMOTE=10.3.0.2
MOBIKED_OLD_UPLINK=eth0
MOBIKED_UPLINK=eth1
`
	if string(b) != want {
		t.Fatalf("hook environment:\n%s\nwant:\n%s", b, want)
	}
}

// TestHookTimeout: a hook that hangs is killed after the timeout and the
// next one still runs.
func TestHookTimeout(t *testing.T) {
	// The slow hook's child keeps running unless the whole group is killed.
	hook := writeHook(t, "[ \"$MOBIKED_CONN\" = slow ] && { sleep 60; exit 0; }\nexit 0\n")
	h := newHookRunner(slog.New(slog.DiscardHandler), policy.Hooks{OnMove: hook, Timeout: 200 * time.Millisecond})
	res := runHooks(t, h)
	start := time.Now()
	h.moved(MoveEvent{Conn: "slow"})
	h.moved(MoveEvent{Conn: "fast"})
	if err := <-res; err == nil || !strings.Contains(err.Error(), "killed after 200ms") {
		t.Fatalf("slow hook: %v, want killed after the timeout", err)
	}
	if err := <-res; err != nil {
		t.Fatalf("hook after a killed one: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("a hung hook held the queue for %s", d)
	}
}

// TestHookNeverBlocks: with no runner draining the queue (a hook that never
// returns), moved still returns at once and drops past the queue's bound.
func TestHookNeverBlocks(t *testing.T) {
	h := newHookRunner(slog.New(slog.DiscardHandler), policy.Hooks{OnMove: "/bin/true", Timeout: time.Second})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range hookQueue * 3 {
			h.moved(MoveEvent{Conn: "c"})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("moved blocked on a full queue")
	}
	if len(h.q) != hookQueue {
		t.Fatalf("queue holds %d, want the bound %d", len(h.q), hookQueue)
	}
}

// TestHookObserve: a steer request followed by its confirmation queues one
// move with the request's origin and cause; a failed steer queues none.
func TestHookObserve(t *testing.T) {
	d := &daemon{core: mobike.New(mobike.Config{Policy: policy.Default().Settings()}), steers: map[string]mobike.SteerRequested{},
		hooks: newHookRunner(slog.New(slog.DiscardHandler), policy.Hooks{OnMove: "/bin/true", Timeout: time.Second})}
	now := time.Unix(1000, 0)
	from, to := pair("10.1.0.2", "10.3.0.2"), pair("10.2.0.2", "10.3.0.2")
	d.hookObserve(now, mobike.SteerRequested{Group: "a", From: from, To: to, Forced: true, Cause: mobike.SteerPathDown})
	d.hookObserve(now, mobike.SteerRequested{Group: "b", From: from, To: to, Cause: mobike.SteerBetterPath})
	d.hookObserve(now, mobike.SteerFailed{Group: "b", Pair: to, Cause: mobike.FailUnconfirmed})
	d.hookObserve(now, mobike.SteerConfirmed{Group: "b", Pair: to})
	d.hookObserve(now, mobike.SteerConfirmed{Group: "a", Pair: to, After: 100 * time.Millisecond})
	if len(d.hooks.q) != 1 {
		t.Fatalf("%d hooks queued, want 1", len(d.hooks.q))
	}
	got := <-d.hooks.q
	want := MoveEvent{Conn: "a", Old: from, New: to, Cause: "path-down", After: 100 * time.Millisecond}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("queued %+v, want %+v", got, want)
	}
}
