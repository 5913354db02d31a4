import { validate as validateCron } from 'node-cron'
import type { ConnectorDefinition, OptionIssue } from '../../src/sdk/index.js'
import { TimerConnector } from './timer-connector.js'
import { timerTriggerSchema, type TimerTriggerOptions } from './options.js'

export { TimerConnector, type ScheduleStatus, type TimerBody } from './timer-connector.js'
export { timerTriggerSchema, type TimerTriggerOptions } from './options.js'

export function validTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    return true
  } catch {
    return false
  }
}

function validateTrigger(t: TimerTriggerOptions): OptionIssue[] {
  const issues: OptionIssue[] = []
  const fields = t.schedule.trim().split(/\s+/)
  if (fields.length !== 6) {
    issues.push({
      code: 'SLUICE_ERR_CONFIG_CRON',
      path: ['schedule'],
      message: `has ${fields.length} fields; use 6 with seconds first ("sec min hour day month weekday"), e.g. "0 */5 * * * *"`,
    })
  } else if (!validateCron(t.schedule)) {
    issues.push({ code: 'SLUICE_ERR_CONFIG_CRON', path: ['schedule'], message: `${JSON.stringify(t.schedule)} is not a valid cron expression` })
  }
  if (t.timezone !== undefined && !validTimezone(t.timezone)) {
    issues.push({
      code: 'SLUICE_ERR_CONFIG_TIMEZONE',
      path: ['timezone'],
      message: `${JSON.stringify(t.timezone)} is not an IANA time zone (e.g. Europe/Amsterdam, UTC)`,
    })
  }
  return issues
}

export const timerConnector: ConnectorDefinition<TimerTriggerOptions, never> = {
  kind: 'timer',
  triggerSchema: timerTriggerSchema,
  validateTrigger,
  createTrigger: (spec) => new TimerConnector(spec),
}
