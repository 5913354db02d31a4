/**
 * Shared by the config loader tests: a temp project with real function files, parseConfig
 * wrappers that return the issues of a rejected config, and position helpers.
 */
import { join } from 'node:path'
import { afterAll, beforeAll, expect } from 'vitest'
import { CONNECTORS } from '../../src/config/connectors.js'
import { formatIssue, issuesOf, parseConfig, type ConfigIssue, type LoadedConfig, type LoadOptions } from '../../src/config/load.js'
import type { ErrorCode } from '../../src/errors.js'
import { projectDir } from '../helpers/gateway.js'

export const FUNCTIONS: Record<string, string> = {
  'functions/ok.ts': 'export default async function (events: unknown[]) {\n  return events.length\n}\n',
  'functions/syntax.ts': 'export default async function (events) {\n  return events.map((e) => e.id\n}\n',
  'functions/uses-node-fs.ts': "import { readFileSync } from 'node:fs'\nexport default async () => readFileSync('/etc/passwd', 'utf8')\n",
  'functions/uses-fs.ts': "import fs from 'fs'\nexport default async () => fs.readFileSync('/etc/passwd', 'utf8')\n",
  'functions/no-default.ts': 'export async function handler() {\n  return 1\n}\n',
}

let project: { dir: string; cleanup(): void } | undefined
let elsewhere: { dir: string; cleanup(): void } | undefined

/**
 * Registers, in the calling test file, a fresh project folder (FUNCTIONS under functions/) and a
 * second folder holding abs-fn.ts, both removed after the file's tests.
 */
export function useProject(): void {
  beforeAll(() => {
    project = projectDir(FUNCTIONS)
    elsewhere = projectDir({ 'abs-fn.ts': 'export default async () => 1\n' })
  })
  afterAll(() => {
    project?.cleanup()
    elsewhere?.cleanup()
  })
}

/** The project folder (the loader's root). */
export function projectRoot(): string {
  if (!project) throw new Error('call useProject() in the test file')
  return project.dir
}

/** A folder outside the project holding abs-fn.ts. */
export function elsewhereDir(): string {
  if (!elsewhere) throw new Error('call useProject() in the test file')
  return elsewhere.dir
}

export function options(env: Record<string, string>, extra: Partial<LoadOptions> = {}): LoadOptions {
  return { connectors: CONNECTORS, root: projectRoot(), env, ...extra }
}

export function parse(yaml: string, env: Record<string, string> = {}, extra: Partial<LoadOptions> = {}): Promise<LoadedConfig> {
  return parseConfig(yaml, join(projectRoot(), 'gateway.yaml'), options(env, extra))
}

/** Parses `yaml`, expects SLUICE_ERR_CONFIG_INVALID, returns its issues. */
export async function issues(yaml: string, env: Record<string, string> = {}, extra: Partial<LoadOptions> = {}): Promise<ConfigIssue[]> {
  let err: unknown
  try {
    await parse(yaml, env, extra)
  } catch (e) {
    err = e
  }
  expect(err, 'parseConfig should have rejected').toBeDefined()
  expect((err as { code?: unknown }).code).toBe('SLUICE_ERR_CONFIG_INVALID')
  const list = issuesOf(err)
  expect(list.length).toBeGreaterThan(0)
  // The thrown message lists every issue in its printed form.
  for (const i of list) expect((err as Error).message).toContain(formatIssue(i))
  return list
}

/** The one issue `yaml` produces. */
export async function issue(yaml: string, env: Record<string, string> = {}): Promise<ConfigIssue> {
  const list = await issues(yaml, env)
  expect(list.map(formatIssue)).toHaveLength(1)
  return list[0] as ConfigIssue
}

/** 1-based line and column of the first occurrence of `needle` in `text` (after `after`, when given). */
export function at(text: string, needle: string, after = ''): { line: number; col: number } {
  const from = after ? text.indexOf(after) : 0
  expect(from, `"${after}" in the YAML`).toBeGreaterThanOrEqual(0)
  const offset = text.indexOf(needle, from)
  expect(offset, `"${needle}" in the YAML`).toBeGreaterThanOrEqual(0)
  const lines = text.slice(0, offset).split('\n')
  return { line: lines.length, col: (lines[lines.length - 1] as string).length + 1 }
}

export function expectIssue(i: ConfigIssue, code: ErrorCode, path: string, pos: { line: number; col: number }): void {
  expect({ code: i.code, path: i.path, file: i.file, line: i.line, col: i.col }).toEqual({ code, path, file: 'gateway.yaml', ...pos })
  expect(formatIssue(i)).toBe(`gateway.yaml:${pos.line}:${pos.col} ${path ? `${path} ` : ''}${i.message} [${code}]`)
}

export const TIMER = `trigger: { timer: { schedule: "0 * * * * *" } }`

/** A config with one timer function `telemetry`; `extra` lines are added to the function (4-space indent). */
export function telemetry(extra = '', top = ''): string {
  return `${top}functions:\n  telemetry:\n    code: functions/ok.ts\n    ${TIMER}\n${extra}`
}
