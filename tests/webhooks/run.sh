#!/usr/bin/env bash
# Checks real Keyway webhook deliveries with Seam's official verifier (npm @seamapi/webhook):
# installs the pinned package, then runs the Rust webhook tests with KEYWAY_WEBHOOK_VERIFIER set,
# so `the_official_seam_verifier_accepts_a_real_delivery` captures deliveries on a loopback
# receiver and has `verify.mjs` accept them with the webhook's secret and reject a wrong one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
cd "$here/../.."
KEYWAY_WEBHOOK_VERIFIER="$here/verify.mjs" \
    cargo test -p keyway-server --test it webhooks:: -- --nocapture
