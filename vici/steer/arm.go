package steer

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Arming charon's roam evaluation (mobike.ActArmRoam): charon evaluates its
// IKE_SAs' paths 100 ms after the first routing event it sees and merges
// later events into that evaluation, so a route change made while one is
// pending is carried out when it runs. ArmRoam starts one with a change that
// routes nothing: a host route, in mobiked's table, to a destination no peer
// can have, added and deleted at once. mobiked's rules send only peer
// addresses to its table, so no packet is ever routed by it; charon reacts
// to routes in any table but its own (220) and local, with an output
// interface that is up and a source address.

// Arm destinations: the IPv4 limited broadcast address and an IPv6
// multicast address of reserved scope — never an IKE peer.
var (
	armDst4 = netip.MustParsePrefix("255.255.255.255/32")
	armDst6 = netip.MustParsePrefix("ff0f::6d6f:6269:6b65/128")
)

type armReq struct {
	linkIdx int
	local   netip.Addr
}

// RequestArmRoam asks Run to arm charon's roam evaluation through link
// linkIdx with source local (mobike.ActArmRoam). It never blocks; a request
// not carried out yet is replaced.
func (s *Steerer) RequestArmRoam(linkIdx int, local netip.Addr) {
	s.smu.Lock()
	s.arm = &armReq{linkIdx: linkIdx, local: local}
	s.smu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ArmRoam adds and deletes the arm route through linkIdx with source local.
// Nothing is left behind: a leftover (a crash between the two calls) is an
// unwanted route of ours that the next Set removes.
func (s *Steerer) ArmRoam(linkIdx int, local netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	local = local.Unmap()
	if linkIdx <= 0 || !local.IsValid() || local.IsUnspecified() {
		return fmt.Errorf("steer: arm roam via link %d from %v: no uplink or source", linkIdx, local)
	}
	dst := armDst4
	if local.Is6() {
		dst = armDst6
	}
	k, v := routeKey{Table: s.o.Table, Dst: dst}, routeVal{LinkIdx: linkIdx, Src: local}
	if _, wanted := s.want.routes[k]; wanted {
		return fmt.Errorf("steer: arm roam: %s is a wanted route", routeString(k, v))
	}
	r := s.nlRoute(k, v)
	// A leftover of a crash between the two calls is there already: its
	// removal alone is the event.
	if err := s.h.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("steer: arm roam: route add %s: %w", routeString(k, v), err)
	}
	if err := s.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("steer: arm roam: route del %s: %w", routeString(k, v), err)
	}
	s.arms.Add(1)
	return nil
}

// Arms returns how many times ArmRoam changed the kernel.
func (s *Steerer) Arms() uint64 { return s.arms.Load() }
