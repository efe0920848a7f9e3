// Package deploy holds mobiked's operational artefacts: the systemd unit, the
// strongswan.d snippet with the charon settings mobiked needs, an example
// configuration, Kubernetes manifests, a Grafana dashboard and Prometheus
// alert rules. The Go package only embeds the files tools need at run time.
package deploy

import _ "embed"

// MobikedConf is strongswan.d/mobiked.conf: the charon settings of steering
// recipe B (prefer_best_path, kernel-netlink fwmark and process_rules).
//
//go:embed strongswan.d/mobiked.conf
var MobikedConf string
