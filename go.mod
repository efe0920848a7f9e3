module github.com/mobiked/mobiked

go 1.26.0

require (
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/strongswan/govici v0.8.1 // indirect
	github.com/vishvananda/netlink v1.3.1 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
