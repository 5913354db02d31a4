#!/usr/bin/env node
// The sluice command. This process never loads isolated-vm (worker hosts do, and the gateway
// forks them with --no-node-snapshot), so it needs no Node flags of its own.
import '../dist/src/cli/bin.js'
