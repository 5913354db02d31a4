import type { Handler, TimerEvent } from 'sluice/function'

/**
 * {{name}}: runs on its schedule (one tick per invocation). With catchUp: latest, a tick missed
 * while the gateway was down runs once at start with isPastDue: true.
 */
const handler: Handler<TimerEvent> = async ([tick], ctx) => {
  if (!tick) return
  if (tick.body.isPastDue) ctx.log.warn('running a tick that was missed while the gateway was down')
  ctx.log(`{{name}} tick for ${tick.body.scheduledAt}; next at ${tick.body.scheduleStatus.next ?? 'unknown'}`)
}

export default handler
