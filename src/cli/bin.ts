/** Entry point of the `sluice` command (bin/sluice.js loads the built copy of this file). */
import { main, reportError } from './main.js'

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => process.exit(reportError(err)),
)
