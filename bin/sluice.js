#!/usr/bin/env node
// The sluice command. This process never loads isolated-vm (worker hosts do, and the gateway
// forks them with --no-node-snapshot), so it needs no Node flags of its own.
import { main, reportError } from '../dist/src/cli/main.js'

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => process.exit(reportError(err)),
)
