# Deflect: the two commands a newcomer needs, plus the pieces they are made of.
#   make demo   build the deflect tool and the guests, and run the demo guest
#   make test   build the guests and run the whole test suite
#   make bench  run the benchmarks and write BENCHMARKS.md
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
bench: guests
	@scripts/install-qemu-peer
	$(SWIFT) build -c release --product deflect-bench
	$(SWIFT) build -c release --product deflect
	$(MAKE) -s -C Benchmarks/reference
	LD_PRELOAD=$(CURDIR)/Benchmarks/reference/malloc_count.so $$($(SWIFT) build -c release --show-bin-path)/deflect-bench $(BENCH_ARGS)
	$$($(SWIFT) build -c release --show-bin-path)/deflect-bench --policy-fuzz 100000
	$$($(SWIFT) build -c release --show-bin-path)/deflect-bench --snapshot-fuzz 10000
	$$($(SWIFT) build -c release --show-bin-path)/deflect-bench --snapshot-timing 64,1024,3072 --rounds 3
	$$($(SWIFT) build -c release --show-bin-path)/deflect-bench --control 500 --pause-cycles 100
	$$($(SWIFT) build -c release --show-bin-path)/deflect-bench --migration 64,1024 --dirty-rates 0,10,100
	$(SWIFT) build -c release --product hypercall-bench
	$$($(SWIFT) build -c release --show-bin-path)/hypercall-bench --output BENCHMARKS.md

docs:
	@scripts/docs

clean:
	$(MAKE) -s -C Guests clean
	$(SWIFT) package clean

.PHONY: all guests build demo test bench docs clean
