# Deflect: the two commands a newcomer needs, plus the pieces they are made of.
#   make demo   build everything and run the demo guest
#   make test   build the guests and run the whole test suite
SWIFT ?= swift

all: build

guests:
	$(MAKE) -s -C Guests

build: guests
	$(SWIFT) build

demo: build
	@scripts/demo

test: guests
	@scripts/test

clean:
	$(MAKE) -s -C Guests clean
	$(SWIFT) package clean

.PHONY: all guests build demo test clean
