/**
 * Configuration problems: their printed form and the error that carries them. Kept apart from the
 * loader so the CLI can report them without loading the schema and the bundler.
 */
import { SluiceError } from '../errors.js'
import type { Positioned } from './yaml-source.js'

/** One configuration problem, positioned in the file (path: dotted key path). */
export type ConfigIssue = Positioned

/** `file:line:col key.path message [CODE]`. */
export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.col} ${i.path ? `${i.path} ` : ''}${i.message} [${i.code}]`
}

/** SLUICE_ERR_CONFIG_INVALID listing every issue; `issuesOf` reads them back. */
export function configError(issues: ConfigIssue[]): SluiceError {
  const err = new SluiceError(
    'SLUICE_ERR_CONFIG_INVALID',
    `configuration has ${issues.length} error${issues.length === 1 ? '' : 's'}:\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`,
  )
  Object.defineProperty(err, 'issues', { value: issues, enumerable: true })
  return err
}

/** The issues of a SLUICE_ERR_CONFIG_INVALID error ([] for any other error). */
export function issuesOf(err: unknown): ConfigIssue[] {
  const issues = (err as { issues?: unknown } | null)?.issues
  return Array.isArray(issues) ? (issues as ConfigIssue[]) : []
}
