# mobiked — build, test and demo. Everything here runs as root (network
# namespaces, real charon); when not root, targets re-run themselves through
# sudo if it exists.

SHELL    := /bin/bash
GO       ?= go
export PATH := $(PATH):/usr/local/go/bin
# Every package the lab and the daemon need. apt installs with
# --no-install-recommends, so a package that is only recommended by another
# (libstrongswan-standard-plugins: openssl, gcm) must be listed here;
# cmd/mobike-lab/lab TestPluginPackages fails otherwise. procps: the lab's
# sysctl (a minimal Debian has none).
DEB_PKGS := strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins libstrongswan-extra-plugins nftables iproute2 iputils-ping procps
# What building and testing need besides: ca-certificates (go fetches the
# modules over HTTPS), gcc and libc6-dev (-race needs cgo). .ci/fresh-check
# (make fresh-check) proves both lists on a fresh Debian 12.
DEB_DEV_PKGS := ca-certificates gcc libc6-dev
BIN      := bin
FUZZTIME ?= 60s

# Version and revision stamped into the binaries (--version, mobike_build_info)
# and the package: the latest vX.Y.Z tag, else 0.1.0~gitDATE.REV. The Go
# toolchain stamps the revision itself only in a plain clone (not in a git
# worktree, and not with GOFLAGS=-buildvcs=false), so it is passed here too.
GIT_REV  := $(shell git rev-parse HEAD 2>/dev/null)
VERSION  ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null); \
	if [ -n "$$v" ]; then echo "$$v" | sed "s/^v//" | sed 's/-/+/; s/-/./g'; \
	else echo "0.1.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null).$$(git rev-parse --short=12 HEAD 2>/dev/null)"; fi)
VERSION  := $(VERSION)
LDFLAGS  := -X github.com/mobiked/mobiked/cmd/internal/buildinfo.version=$(VERSION) \
	-X github.com/mobiked/mobiked/cmd/internal/buildinfo.revision=$(GIT_REV)

# Debian package (make deb): nfpm runs through `go run` at a fixed version.
NFPM_VERSION ?= v2.45.2
NFPM      ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
DEB_OUT   ?= dist
DEB_BUILD ?= $(DEB_OUT)/build
DEB_ARCH  ?= $(shell $(GO) env GOARCH)

# make install (non-Debian hosts): DESTDIR for staging, PREFIX for the binaries.
DESTDIR  ?=
PREFIX   ?= /usr
UNITDIR  ?= /lib/systemd/system

ROOT_TARGETS := deps test demo bench fuzz fresh-check

.PHONY: all build deps test demo bench fuzz vet clean deb install $(ROOT_TARGETS)

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# deb builds dist/mobiked_VERSION_ARCH.deb (or into DEB_OUT): static binaries,
# the systemd unit, charon's settings at /etc/strongswan.d/mobiked.conf, an
# empty (zero-config) /etc/mobiked/mobiked.yaml conffile, docs, LICENSE.
# deploy TestDebPackage checks its layout.
deb:
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD) $(DEB_OUT)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $(DEB_BUILD)/ ./cmd/mobiked ./cmd/mobikectl ./cmd/mobike-conform
	$(DEB_BUILD)/mobikectl completion bash > $(DEB_BUILD)/mobikectl.bash
	sed 's|@DEB_BUILD@|$(DEB_BUILD)|g' deploy/nfpm.yaml > $(DEB_BUILD)/nfpm.yaml
	VERSION="$(VERSION)" DEB_ARCH="$(DEB_ARCH)" \
		$(NFPM) package --config $(DEB_BUILD)/nfpm.yaml --packager deb --target $(DEB_OUT)/
	rm -rf $(DEB_BUILD)

# install puts the same files as the package in place, for hosts without
# dpkg (run as root, or with DESTDIR). Existing config files are kept.
install: build
	install -D -m 0755 $(BIN)/mobiked $(DESTDIR)$(PREFIX)/sbin/mobiked
	install -D -m 0755 $(BIN)/mobikectl $(DESTDIR)$(PREFIX)/bin/mobikectl
	install -D -m 0755 $(BIN)/mobike-conform $(DESTDIR)$(PREFIX)/bin/mobike-conform
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/share/doc/mobiked/examples $(DESTDIR)/etc/strongswan.d
	sed 's|/usr/sbin/mobiked|$(PREFIX)/sbin/mobiked|' deploy/systemd/mobiked.service > $(DESTDIR)$(UNITDIR)/mobiked.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mobiked.service
	[ -e $(DESTDIR)/etc/strongswan.d/mobiked.conf ] || install -m 0644 deploy/strongswan.d/mobiked.conf $(DESTDIR)/etc/strongswan.d/mobiked.conf
	[ -e $(DESTDIR)/etc/mobiked/mobiked.yaml ] || install -D -m 0640 deploy/debian/mobiked.yaml $(DESTDIR)/etc/mobiked/mobiked.yaml
	install -m 0644 deploy/mobiked.yaml $(DESTDIR)$(PREFIX)/share/doc/mobiked/examples/mobiked.yaml
	install -m 0644 README.md docs/deploy.md docs/conformance.md deploy/METRICS.md LICENSE $(DESTDIR)$(PREFIX)/share/doc/mobiked/
	@echo "installed; next: restart charon, then systemctl daemon-reload && systemctl enable --now mobiked && mobikectl doctor"

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

ifneq ($(shell id -u),0)
$(ROOT_TARGETS):
	@if command -v sudo >/dev/null 2>&1; then \
		echo "make $@: not root, re-running through sudo"; \
		exec sudo -E env "PATH=$(PATH)" $(MAKE) $@; \
	else \
		echo "make $@ needs root (network namespaces, strongSwan) and sudo is not installed: run it as root" >&2; exit 1; \
	fi
else

# deps installs what is missing of DEB_PKGS and DEB_DEV_PKGS (apt-get update
# first), finishes a half-done install (dpkg --configure -a), reinstalls
# packages whose files were removed (dpkg --verify), and is a no-op otherwise.
deps:
	@command -v $(GO) >/dev/null || { echo "Go is not installed (need Go 1.26)"; exit 1; }
	@if dpkg --audit 2>/dev/null | grep -q .; then \
		echo "deps: finishing an interrupted install (dpkg --configure -a)"; \
		DEBIAN_FRONTEND=noninteractive dpkg --configure -a; \
	fi
	@missing=""; for p in $(DEB_PKGS) $(DEB_DEV_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	broken=""; for p in $(DEB_PKGS) $(DEB_DEV_PKGS); do \
		case " $$missing " in *" $$p "*) continue;; esac; \
		dpkg --verify $$p 2>/dev/null | grep -q '^missing' && broken="$$broken $$p"; \
	done; \
	if [ -n "$$missing$$broken" ]; then \
		apt-get update -q || exit 1; \
	fi; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing || exit 1; \
	fi; \
	if [ -n "$$broken" ]; then \
		echo "deps: reinstalling (files missing)$$broken"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --reinstall $$broken || exit 1; \
	fi; \
	[ -n "$$missing$$broken" ] || echo "deps: all present"

# test: vet + the whole suite with the race detector, lab end-to-end tests
# with real charon included (they need root).
test: deps vet
	$(GO) test -race -count=1 -timeout 15m ./...

demo: deps build
	$(BIN)/mobike-lab demo

bench: deps build
	$(BIN)/mobike-lab bench

# fresh-check runs `make demo` and `make test` on a fresh Debian 12 root
# (debootstrap; slow, needs the Debian mirror and the Go module proxy; not
# part of test or CI). FRESH_* variables: see .ci/fresh-check.
fresh-check:
	.ci/fresh-check

# fuzz runs every Fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done
endif

clean:
	rm -rf $(BIN) dist
