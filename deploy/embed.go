// Package deploy holds mobiked's operational artefacts: the systemd unit, the
// strongswan.d snippet with the charon settings mobiked needs, an example
// configuration, Kubernetes manifests, a Grafana dashboard and Prometheus
// alert rules. The Go package only embeds the files tools need at run time.
package deploy

import _ "embed"

// CharonConfPath is where MobikedConf is installed: Debian's strongswan.conf
// includes strongswan.d/*.conf at the top level (strongswan.d/charon/*.conf
// lands inside charon.plugins, where these settings mean nothing). The docs,
// the Debian package and the lab all use this path; a test checks the docs.
const CharonConfPath = "/etc/strongswan.d/mobiked.conf"

// MobikedConf is strongswan.d/mobiked.conf: the charon settings of steering
// recipe B (prefer_best_path, kernel-netlink fwmark and process_rules).
//
//go:embed strongswan.d/mobiked.conf
var MobikedConf string
