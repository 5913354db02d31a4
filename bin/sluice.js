#!/usr/bin/env -S node --max-semi-space-size=64
// The sluice command. This process never loads isolated-vm (worker hosts do, and the gateway
// forks them with --no-node-snapshot), so it needs no flags for that. The larger young
// generation cuts the gateway's garbage-collection cost per event by about a quarter
// (bench/README.md); running `node bin/sluice.js` without it works the same, only slower.
import '../dist/src/cli/bin.js'
