/**
 * One function's parts in one record: its configuration, compiled code, output bindings and
 * trigger binding. A unit is registered with the sandbox pool, scheduler and router once; its
 * trigger starts and stops on its own, so a function can be added, replaced or removed at run
 * time (hot reload) without touching the others.
 */
import type { FunctionConfig } from '../config/schema.js'
import { SluiceError } from '../errors.js'
import type { CompiledFunction } from '../sandbox/compile.js'
import type { OutputBinding } from '../sdk/index.js'
import { buildOutputs, type GatewayParts } from './assembly.js'
import type { TriggerBinding } from './triggers.js'

export interface FunctionUnit {
  readonly name: string
  readonly config: FunctionConfig
  readonly code: CompiledFunction
  readonly outputs: ReadonlyMap<string, OutputBinding>
  /** Set once the trigger was created (it may still be starting or retrying). */
  trigger?: TriggerBinding
}

/**
 * Builds a function's unit and registers it with the pool, scheduler and router. Its trigger is
 * not started (see startTrigger).
 */
export function createUnit(parts: GatewayParts, fn: FunctionConfig, compiled: ReadonlyMap<string, CompiledFunction>): FunctionUnit {
  const code = compiled.get(fn.name)
  if (!code) throw new SluiceError('SLUICE_ERR_FUNCTION_NOT_FOUND', `function ${fn.name} was not compiled`, { context: { function: fn.name } })
  parts.pool.registerCode(code.hash, code.code)
  const outputs = buildOutputs(parts, fn)
  parts.scheduler.register({ name: fn.name, hash: code.hash, memoryMb: fn.memoryMb, outputs: [...outputs.keys()], timeoutMs: fn.timeoutMs, cpuTimeMs: fn.cpuTimeMs, scale: fn.scale })
  parts.router.register({
    name: fn.name,
    batch: fn.trigger.kind === 'http' ? { maxSize: 1, maxWaitMs: 0 } : fn.batch,
    retry: fn.retry,
    maxBacklog: fn.maxBacklog,
    orderKey: fn.orderKey,
    maxConcurrency: fn.scale.max,
    outputs,
  })
  return { name: fn.name, config: fn, code, outputs }
}

/** Closes a unit's output bindings (after its trigger stopped and the router drained). */
export async function closeOutputs(unit: FunctionUnit): Promise<void> {
  await Promise.all([...unit.outputs.values()].map((o) => o.close()))
}
