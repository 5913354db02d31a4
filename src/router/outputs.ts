import { SluiceError, toInfo, type ErrorInfo } from '../errors.js'
import type { RouterFunction } from './router.js'

/**
 * Publishes what one invocation wrote to its outputs, grouped per output; resolves once every
 * binding confirmed, with undefined, or with the error that fails the batch (never rejects):
 * SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN, or SLUICE_ERR_OUTPUT_FAILED (retriable).
 */
export async function publishOutputs(fn: RouterFunction, outputs: Array<{ name: string; value: unknown }>): Promise<ErrorInfo | undefined> {
  if (outputs.length === 0) return undefined
  const byName = new Map<string, unknown[]>()
  for (const o of outputs) {
    const list = byName.get(o.name)
    if (list) list.push(o.value)
    else byName.set(o.name, [o.value])
  }
  try {
    await Promise.all(
      [...byName].map(([name, values]) => {
        const binding = fn.outputs.get(name)
        if (!binding) throw new SluiceError('SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN', `output ${name} is not configured for function ${fn.name}`)
        return binding.publish(values)
      }),
    )
    return undefined
  } catch (e) {
    const info = toInfo(e, 'SLUICE_ERR_OUTPUT_FAILED')
    return info.code === 'SLUICE_ERR_FUNCTION_OUTPUT_UNKNOWN' ? info : { ...info, code: 'SLUICE_ERR_OUTPUT_FAILED', retriable: true }
  }
}
