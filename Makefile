# Acceptance reports (SPEC §9): each target runs one module of seed 004 and writes
# reports/phase_<X>_acceptance.{json,md}.
GATEKEEPER ?= cargo run --release --quiet --

.PHONY: verify-phase-a verify-phase-b verify-phase-c verify-phase-d verify-phase-e test ci

verify-phase-%:
	$(GATEKEEPER) verify-phase $*

test:
	cargo test

ci:
	bash .ci/run
