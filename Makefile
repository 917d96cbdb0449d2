# make test   what CI runs: gofmt, go vet, staticcheck, race tests, nested modules,
#             the Firefox extension's node tests, and the interop matrix (into a
#             temporary directory); every step runs, and the failed ones are
#             named at the end
# make interop the interop matrix (cmd/masque-interop) into INTEROP_OUT
# make bench  the benchmark table (cmd/masque-bench; BENCH_ARGS)
# make bench-patched  the same on quic-go with the patches we propose upstream
# make load   masque-load against a fresh masqued on loopback (LOAD_ARGS)
# make fuzz   every Fuzz target for FUZZTIME each
# make build  binaries into bin/
# make firefox the Firefox extension into browser/firefox/dist (npm, for its
#             bundle only)
#
# Needs Go, and Node.js with npm for the Firefox extension. staticcheck is
# installed into GOPATH/bin on first use; the clients the tests drive (curl,
# Debian's chromium and firefox-esr, with certutil to trust masqued's
# certificate in Firefox's profile) and the redis-server the Privacy Pass
# tests start (on loopback; they skip without it, except under CI=true) and
# iproute2's ip for internal/twohop's network namespaces (root only) are
# installed from Debian's packages if missing.

GO                  ?= go
FUZZTIME            ?= 60s
TEST_TIMEOUT        ?= 10m
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := $(shell $(GO) env GOPATH)/bin/staticcheck
# command:package, for the Debian packages whose commands the tests run
DEB_COMMANDS        := curl:curl chromium:chromium redis-server:redis-server firefox-esr:firefox-esr certutil:libnss3-tools ip:iproute2 nft:nftables
BROWSERS            := chromium firefox-esr
EXTENSION           := browser/firefox
NPM                 ?= npm
SUDO                := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NESTED_MODULES      := interop/peers/masquego
INTEROP_OUT         ?= interop-results
INTEROP_FLAGS       ?=

BENCH_ARGS          ?=
PATCHES             ?= $(wildcard cmd/masque-bench/patches/*.patch)
LOAD_ARGS           ?= -mode setup -c 1 -t 50 -rate 1000 -d 10s -baseline

.PHONY: test fmt vet lint deps unit nested js firefox interop test-interop bench bench-patched load fuzz build

# Every step runs even when an earlier one fails, so that one failure never
# hides the rest; the failed steps are named at the end and make exits 1.
TEST_STEPS          := fmt vet lint unit nested js test-interop

test:
	@failed=""; for step in $(TEST_STEPS); do \
		echo "== make $$step"; \
		$(MAKE) --no-print-directory $$step || failed="$$failed $$step"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed"; exit 1; fi; \
	echo "make test: all $(words $(TEST_STEPS)) steps passed"

fmt:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint: $(STATICCHECK)
	$(STATICCHECK) ./...

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

deps:
	@missing=""; for cp in $(DEB_COMMANDS); do command -v $${cp%%:*} >/dev/null || missing="$$missing $${cp#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq$$missing; \
	fi

# The allocation tests run again without -race, under which sync.Pool drops
# buffers on purpose and they skip. They run even when the race run failed.
UNIT_RACE           := $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
UNIT_ALLOCS         := $(GO) test -count=1 -run 'Allocs|TestPacketBuffers' ./...

unit: deps
	@rc=0; \
	echo "$(UNIT_RACE)"; $(UNIT_RACE) || rc=1; \
	echo "$(UNIT_ALLOCS)"; $(UNIT_ALLOCS) || rc=1; \
	exit $$rc

# The extension's dependencies come from its lockfile; its tests are node's.
$(EXTENSION)/node_modules: $(EXTENSION)/package-lock.json
	cd $(EXTENSION) && $(NPM) ci --no-audit --no-fund
	@touch $@

js: $(EXTENSION)/node_modules
	cd $(EXTENSION) && $(NPM) test

firefox: $(EXTENSION)/node_modules
	cd $(EXTENSION) && $(NPM) run build

nested:
	@set -e; for m in $(NESTED_MODULES); do \
		echo "== $$m"; \
		(cd $$m && $(GO) vet ./... && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...); \
	done

# The full matrix: every case, client and server. Where a browser cannot be
# installed, the browser cells are reported unsupported, with a notice that
# says so. The runner builds the Firefox extension itself (npm run build).
interop: $(EXTENSION)/node_modules
	@$(MAKE) --no-print-directory deps || echo "could not install all of: $(DEB_COMMANDS)"
	@flags=""; for b in $(BROWSERS); do if ! command -v $$b >/dev/null; then \
		echo "!!!!!!!! $$b is missing and could not be installed: the browser cells are NOT RUN (-no-browser) !!!!!!!!"; \
		flags="-no-browser"; \
	fi; done; \
	$(GO) run ./cmd/masque-interop -out $(INTEROP_OUT) $$flags $(INTEROP_FLAGS)

# Into a temporary directory, removed when every cell passed.
test-interop:
	@out=$$(mktemp -d); $(MAKE) --no-print-directory interop INTEROP_OUT=$$out && rm -rf $$out

bench:
	$(GO) run ./cmd/masque-bench $(BENCH_ARGS)

# The bench with quic-go patched (PATCHES, default all of
# cmd/masque-bench/patches): the measurements behind proposing them upstream.
# A copy of quic-go is patched and used through a temporary go.work; the module
# cache and go.mod stay as they are. masque-go builds without it (GOWORK=off).
bench-patched:
	@set -e; dir=$$(mktemp -d); trap "chmod -R u+w $$dir; rm -rf $$dir" EXIT; \
	cp -r "$$($(GO) list -m -f '{{.Dir}}' github.com/quic-go/quic-go)" $$dir/quic-go; chmod -R u+w $$dir/quic-go; \
	for p in $(PATCHES); do git apply --directory=$$dir/quic-go --unsafe-paths $$p; echo "quic-go patched with $$p" >&2; done; \
	(cd $$dir && $(GO) work init $(CURDIR) && $(GO) work edit -replace github.com/quic-go/quic-go=$$dir/quic-go); \
	GOWORK=$$dir/go.work $(GO) run ./cmd/masque-bench $(BENCH_ARGS)

# masqued prints its address once it listens; it is stopped on any exit.
load: build
	@set -e; dir=$$(mktemp -d); \
	bin/masqued -listen 127.0.0.1:0 -allow-private-targets -cert-out $$dir/cert.pem -log-level warn >$$dir/out & pid=$$!; \
	trap "kill $$pid; rm -r $$dir" EXIT; \
	until grep -q '^certificate' $$dir/out; do kill -0 $$pid; sleep 0.1; done; \
	bin/masque-load -proxy https://$$(awk '/^listening on/{print $$3}' $$dir/out) -ca $$dir/cert.pem -proxy-pid $$pid $(LOAD_ARGS)

# go test -fuzz takes one target at a time, so run each one found.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

build:
	$(GO) build -o bin/ ./...
