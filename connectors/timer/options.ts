import { OneOf, Strict, Type, type Static } from '../../src/sdk/index.js'

export const timerTriggerSchema = Type.Object(
  {
    schedule: Type.String({
      minLength: 1,
      description: 'Cron expression with 6 fields (seconds first), e.g. "0 0 3 * * *".',
    }),
    timezone: Type.Optional(Type.String({ minLength: 1, description: 'IANA zone, e.g. Europe/Amsterdam. Default: UTC.' })),
    catchUp: OneOf(['none', 'latest'], {
      default: 'none',
      description: 'latest: after downtime that missed a tick, run once at start with isPastDue: true.',
    }),
    runOnStartup: Type.Boolean({ default: false, description: 'Also run once when the gateway starts.' }),
    leaseMs: Type.Integer({
      minimum: 500,
      maximum: 10000,
      default: 10000,
      description: 'Lease on a running tick, renewed while it runs: when its instance dies, another takes the tick over this long after the last renewal.',
    }),
  },
  Strict,
)

export type TimerTriggerOptions = Static<typeof timerTriggerSchema>
