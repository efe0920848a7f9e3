package monitor

import (
	"cmp"
	"slices"

	"github.com/mobiked/mobiked/mobike"
)

// Diff names why new differs from old, two states sorted as Build returns
// them. The result is sorted in the order of
// the NetReason constants and holds each reason at most once; it is empty
// when the states are equal. NetResync is never produced by Diff: the monitor
// adds it when a snapshot comes from a full resynchronisation.
//
// A link that keeps its index but changes its name counts as removed and
// added (an index can be reused after a link is deleted).
func Diff(old, new mobike.NetState) []mobike.NetReason {
	var set [mobike.NetGatewayChanged + 1]bool

	oldLinks := make(map[int]mobike.Link, len(old.Links))
	for _, l := range old.Links {
		oldLinks[l.Index] = l
	}
	newLinks := make(map[int]bool, len(new.Links))
	for _, l := range new.Links {
		newLinks[l.Index] = true
		o, ok := oldLinks[l.Index]
		switch {
		case !ok:
			set[mobike.NetLinkAdded] = true
		case o.Name != l.Name:
			set[mobike.NetLinkRemoved] = true
			set[mobike.NetLinkAdded] = true
		case o.Up && !l.Up:
			set[mobike.NetLinkDown] = true
		case !o.Up && l.Up:
			set[mobike.NetLinkUp] = true
		case o.Kind != l.Kind:
			// Same link, other kind (sysfs appeared late): let the core
			// re-rank, as for a new link.
			set[mobike.NetLinkAdded] = true
		}
	}
	for _, l := range old.Links {
		if !newLinks[l.Index] {
			set[mobike.NetLinkRemoved] = true
		}
	}

	// Addresses are sorted by prefix then link (Build's order): walk both
	// lists in step.
	oa, na := old.Addrs, new.Addrs
	for len(oa) > 0 || len(na) > 0 {
		var c int
		switch {
		case len(oa) == 0:
			c = 1
		case len(na) == 0:
			c = -1
		default:
			c = compareAddrKey(oa[0], na[0])
		}
		switch {
		case c < 0:
			set[mobike.NetAddrRemoved] = true
			oa = oa[1:]
		case c > 0:
			set[mobike.NetAddrAdded] = true
			na = na[1:]
		default:
			if oa[0].Flags != na[0].Flags {
				set[mobike.NetAddrFlagsChanged] = true
			}
			oa, na = oa[1:], na[1:]
		}
	}

	if !slices.Equal(old.Gateways, new.Gateways) {
		set[mobike.NetGatewayChanged] = true
	}

	var out []mobike.NetReason
	for r, on := range set {
		if on {
			out = append(out, mobike.NetReason(r))
		}
	}
	return out
}

// compareAddrKey orders addresses like compareAddress, without the flags:
// the identity of an address is its prefix on its link.
func compareAddrKey(a, b mobike.Address) int {
	return cmp.Or(
		a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
		cmp.Compare(a.LinkIdx, b.LinkIdx),
	)
}

// Clone returns a deep copy of s, so that a receiver may keep it while the
// sender keeps its own.
func Clone(s mobike.NetState) mobike.NetState {
	return mobike.NetState{
		Links:    slices.Clone(s.Links),
		Addrs:    slices.Clone(s.Addrs),
		Gateways: slices.Clone(s.Gateways),
	}
}

// Equal reports whether two states are the same.
func Equal(a, b mobike.NetState) bool {
	return slices.Equal(a.Links, b.Links) && slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.Gateways, b.Gateways)
}
