# mobiked — build, test and demo. Everything here runs as root (network
# namespaces, real charon); when not root, targets re-run themselves through
# sudo if it exists.

SHELL    := /bin/bash
GO       ?= go
export PATH := $(PATH):/usr/local/go/bin
# Every package the lab and the daemon need. apt installs with
# --no-install-recommends, so a package that is only recommended by another
# (libstrongswan-standard-plugins: openssl, gcm) must be listed here;
# cmd/mobike-lab/lab TestPluginPackages fails otherwise.
DEB_PKGS := strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins libstrongswan-extra-plugins nftables iproute2 iputils-ping
BIN      := bin
FUZZTIME ?= 60s

ROOT_TARGETS := deps test demo bench fuzz

.PHONY: all build deps test demo bench fuzz vet clean $(ROOT_TARGETS)

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

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

# deps installs what is missing (apt-get update first), finishes a half-done
# install (dpkg --configure -a), reinstalls packages whose files were removed
# (dpkg --verify), and is a no-op otherwise.
deps:
	@command -v $(GO) >/dev/null || { echo "Go is not installed (need Go 1.26)"; exit 1; }
	@if dpkg --audit 2>/dev/null | grep -q .; then \
		echo "deps: finishing an interrupted install (dpkg --configure -a)"; \
		DEBIAN_FRONTEND=noninteractive dpkg --configure -a; \
	fi
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	broken=""; for p in $(DEB_PKGS); do \
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
	rm -rf $(BIN)
