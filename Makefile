# Deflect: the two commands a newcomer needs, plus the pieces they are made of.
#   make demo   build the deflect tool and the guests, and run the demo guest
#   make test   build the guests and run the whole test suite
#   make bench  run the benchmarks and write BENCHMARKS.md (ALLOW_NOISY=1 on a busy host)
#   make docs   build the DocC documentation of the library products
SWIFT ?= swift

all: build

guests:
	$(MAKE) -s -C Guests

build: guests
	$(SWIFT) build

# Only what the demo runs: the deflect product, not the benchmarks, the shim or the tests.
demo: guests
	$(SWIFT) build --product deflect
	@scripts/demo

test: guests
	@scripts/test

# Benchmarks (not tests): release build, C reference, results into BENCHMARKS.md.
# Each section first waits (up to 90 s) for the host's 1-minute load average
# to fall to 1.0 and refuses to run above it (status 3): measure on a quiet
# host, or `make bench ALLOW_NOISY=1` to write the sections marked as noisy.
NOISE = $(if $(ALLOW_NOISY),--allow-noisy)
RELEASE_BIN = $$($(SWIFT) build -c release --show-bin-path)

bench: guests
	@scripts/install-qemu-peer
	$(SWIFT) build -c release --product deflect-bench
	$(SWIFT) build -c release --product deflect
	$(MAKE) -s -C Benchmarks/reference
	LD_PRELOAD=$(CURDIR)/Benchmarks/reference/malloc_count.so $(RELEASE_BIN)/deflect-bench $(NOISE) $(BENCH_ARGS)
	$(RELEASE_BIN)/deflect-bench --startup 21 $(NOISE)
	$(RELEASE_BIN)/deflect-bench --policy-fuzz 100000 $(NOISE)
	$(RELEASE_BIN)/deflect-bench --snapshot-fuzz 10000 $(NOISE)
	$(RELEASE_BIN)/deflect-bench --snapshot-timing 64,1024,3072 --rounds 3 $(NOISE)
	$(RELEASE_BIN)/deflect-bench --control 500 --pause-cycles 100 $(NOISE)
	$(RELEASE_BIN)/deflect-bench --migration 64,1024 --dirty-rates 0,10,100 $(NOISE)
	scripts/debian-linux-guest >/dev/null || true
	$(RELEASE_BIN)/deflect-bench --linux-boot 3 $(NOISE)
	$(RELEASE_BIN)/deflect-bench --virtio 5 $(NOISE)
	$(SWIFT) build -c release --product hypercall-bench
	$(RELEASE_BIN)/hypercall-bench --output BENCHMARKS.md $(NOISE)

docs:
	@scripts/docs

clean:
	$(MAKE) -s -C Guests clean
	$(SWIFT) package clean

.PHONY: all guests build demo test bench docs clean
