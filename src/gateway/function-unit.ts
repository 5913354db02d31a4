/**
 * One function's parts in one record: its configuration, compiled code, output bindings and
 * trigger binding. A unit is registered with the sandbox pool, scheduler and router once; its
 * trigger starts and stops on its own, so a function can be added, replaced or removed at run
 * time (hot reload) without touching the others.
 */
import type { FunctionConfig } from '../config/schema.js'
import { SluiceError } from '../errors.js'
import type { CompiledFunction } from '../sandbox/compile.js'
import type { RouterFunction } from '../router/router.js'
import type { FunctionSpec } from '../scheduler/scheduler.js'
import type { OutputBinding } from '../sdk/index.js'
import { buildOutputs, type GatewayParts } from './assembly.js'
import type { TriggerBinding } from './triggers.js'

export interface FunctionUnit {
  readonly name: string
  readonly config: FunctionConfig
  readonly code: CompiledFunction
  readonly outputs: ReadonlyMap<string, OutputBinding>
  /** When this code version was loaded (ISO time): at start, or by the reload that brought it. */
  readonly loadedAt: string
  /** Set when the latest reload could not load this function (its new code does not compile); cleared by the next reload that loads. */
  reloadError?: { code: string; message: string; at: string }
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
  parts.scheduler.register(schedulerSpec(fn, code))
  parts.router.register(routerFunction(fn, outputs))
  return { name: fn.name, config: fn, code, outputs, loadedAt: new Date().toISOString() }
}

/** What the scheduler knows of a function. */
export function schedulerSpec(fn: FunctionConfig, code: CompiledFunction): FunctionSpec {
  return {
    name: fn.name,
    hash: code.hash,
    memoryMb: fn.memoryMb,
    outputs: Object.keys(fn.outputs),
    timeoutMs: fn.timeoutMs,
    cpuTimeMs: fn.cpuTimeMs,
    scale: fn.scale,
  }
}

/** What the router knows of a function (an HTTP trigger runs each request as its own batch). */
export function routerFunction(fn: FunctionConfig, outputs: ReadonlyMap<string, OutputBinding>): RouterFunction {
  return {
    name: fn.name,
    batch: fn.trigger.kind === 'http' ? { maxSize: 1, maxWaitMs: 0 } : fn.batch,
    retry: fn.retry,
    maxBacklog: fn.maxBacklog,
    orderKey: fn.orderKey,
    maxConcurrency: fn.scale.max,
    outputs,
  }
}

/** Closes a unit's output bindings (after its trigger stopped and the router drained). */
export async function closeOutputs(unit: FunctionUnit): Promise<void> {
  await Promise.all([...unit.outputs.values()].map((o) => o.close()))
}
