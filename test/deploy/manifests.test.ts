/**
 * The Kubernetes manifests in deploy/kubernetes/ (docs/deploy.md): every YAML document is checked
 * against the Kubernetes and CRD schemas stored in test/deploy/schemas/, the kustomization's
 * files exist, the pieces refer to each other correctly, and gateway.yaml passes sluice's own
 * config validation. The negative cases mutate a manifest in memory and expect the error a typo
 * would give, so the checks are known to bite.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseAllDocuments, parse } from 'yaml'
import { Ajv } from 'ajv'
import { CONNECTORS } from '../../src/config/connectors.js'
import { parseConfig, issuesOf } from '../../src/config/load.js'
import { validateManifest, validateScalerMetadata } from './schemas.js'

const ROOT = resolve(import.meta.dirname, '../..')
const BASE = join(ROOT, 'deploy/kubernetes')
/** Files that are not Kubernetes objects. */
const NOT_OBJECTS = new Set(['kustomization.yaml', 'gateway.yaml'])

type Obj = {
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string> }
  spec?: any
  data?: any
  stringData?: Record<string, string>
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name)
    if (e.isDirectory()) return yamlFiles(p)
    return /\.ya?ml$/.test(e.name) && !NOT_OBJECTS.has(e.name) ? [p] : []
  })
}

/** Every document of a file; a YAML syntax error fails here with the file's name. */
function documents(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'))
  return docs.map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${relative(ROOT, file)} document ${i + 1}: ${d.errors.map((e) => e.message).join('; ')}`)
    return d.toJS() as Obj
  })
}

const kustomization = parse(readFileSync(join(BASE, 'kustomization.yaml'), 'utf8')) as {
  namespace: string
  resources: string[]
  configMapGenerator: Array<{ name: string; files: string[]; options?: { labels?: Record<string, string> } }>
  images: Array<{ name: string; newName?: string; newTag?: string }>
}
const gatewayYaml = readFileSync(join(BASE, 'gateway.yaml'), 'utf8')
const base = kustomization.resources.flatMap((r) => documents(join(BASE, r)))
const one = (kind: string, docs: Obj[] = base): Obj => {
  const found = docs.filter((d) => d.kind === kind)
  expect(found, `exactly one ${kind}`).toHaveLength(1)
  return found[0] as Obj
}

/** The ConfigMap kustomize generates from configMapGenerator (without the name hash suffix). */
function generatedConfigMaps(): Obj[] {
  return kustomization.configMapGenerator.map((g) => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: g.name, ...(g.options?.labels ? { labels: g.options.labels } : {}) },
    data: Object.fromEntries(g.files.map((f) => [f, readFileSync(join(BASE, f), 'utf8')])),
  }))
}

/** The subset of kustomize's Kustomization this base uses, closed like the other schemas. */
const kustomizationSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'resources'],
  properties: {
    apiVersion: { const: 'kustomize.config.k8s.io/v1beta1' },
    kind: { const: 'Kustomization' },
    namespace: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
    resources: { type: 'array', items: { type: 'string' }, minItems: 1 },
    configMapGenerator: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string' },
          files: { type: 'array', items: { type: 'string' } },
          options: { type: 'object', additionalProperties: false, properties: { labels: { type: 'object', additionalProperties: { type: 'string' } } } },
        },
      },
    },
    images: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: { name: { type: 'string' }, newName: { type: 'string' }, newTag: { type: 'string' } },
      },
    },
  },
}

/** Values that stand in for the Secret's in gateway.yaml's ${VAR}s. */
const DUMMY_ENV = {
  SLUICE_ADMIN_KEY: 'dummy-admin-key-0123456789abcdef',
  SLUICE_POSTGRES_URL: 'postgres://sluice:dummy@127.0.0.1:5432/sluice',
  MQTT_USERNAME: 'sluice',
  MQTT_PASSWORD: 'dummy',
  AMQP_URL: 'amqp://sluice:dummy@127.0.0.1:5672',
}

async function parseGatewayYaml(text: string) {
  return parseConfig(text, join(BASE, 'gateway.yaml'), { connectors: CONNECTORS, env: DUMMY_ENV, root: ROOT, compile: false })
}

describe('deploy/kubernetes manifests', () => {
  it('kustomization.yaml names files that exist and only keys kustomize knows', () => {
    const validate = new Ajv({ allErrors: true }).compile(kustomizationSchema)
    expect(validate(kustomization), JSON.stringify(validate.errors)).toBe(true)
    const missing = [...kustomization.resources, ...kustomization.configMapGenerator.flatMap((g) => g.files)].filter((f) => !existsSync(join(BASE, f)))
    expect(missing).toEqual([])
    // Every object file of the base is applied, except the Secret template and the examples.
    const listed = new Set(kustomization.resources)
    const unlisted = yamlFiles(BASE)
      .map((f) => relative(BASE, f))
      .filter((f) => !listed.has(f))
    expect(unlisted.sort()).toEqual(['examples/scaledobject-kafka.yaml', 'examples/scaledobject-rabbitmq.yaml', 'secret.example.yaml'])
  })

  it('every document of every manifest matches its Kubernetes or CRD schema', () => {
    const files = yamlFiles(BASE)
    expect(files.length).toBeGreaterThanOrEqual(9)
    const problems: string[] = []
    let count = 0
    for (const file of files) {
      for (const doc of documents(file)) {
        count++
        const where = `${relative(ROOT, file)} ${doc.kind}/${doc.metadata?.name}`
        problems.push(...validateManifest(doc).map((p) => `${where}: ${p}`))
        if (doc.kind === 'ScaledObject') problems.push(...validateScalerMetadata(doc).map((p) => `${where}: ${p}`))
      }
    }
    for (const cm of generatedConfigMaps()) problems.push(...validateManifest(cm).map((p) => `generated ConfigMap/${cm.metadata.name}: ${p}`))
    expect(problems).toEqual([])
    expect(count).toBeGreaterThanOrEqual(11)
  })

  it('kubectl kustomize renders the base into valid objects in the namespace, with the generated ConfigMap and the image wired in', () => {
    // kubectl (with kustomize built in) is part of this machine kind; no cluster is needed.
    const rendered = parseAllDocuments(execFileSync('kubectl', ['kustomize', BASE], { encoding: 'utf8', timeout: 60_000 })).map(
      (d) => d.toJS() as Obj & { metadata: { namespace?: string } },
    )
    expect(rendered.map((d) => d.kind).sort()).toEqual([
      'ConfigMap',
      'Namespace',
      'PodDisruptionBudget',
      'ScaledObject',
      'Service',
      'Service',
      'ServiceMonitor',
      'StatefulSet',
    ])
    expect(rendered.flatMap((d) => validateManifest(d).map((p) => `${d.kind}/${d.metadata.name}: ${p}`))).toEqual([])
    for (const d of rendered.filter((x) => x.kind !== 'Namespace')) expect(d.metadata.namespace, d.kind).toBe(kustomization.namespace)
    const cm = one('ConfigMap', rendered)
    expect(cm.metadata.name).toMatch(/^sluice-config-[a-z0-9]{10}$/)
    expect(cm.data['gateway.yaml']).toBe(gatewayYaml)
    const pod = one('StatefulSet', rendered).spec.template.spec
    expect(pod.volumes.find((v: { configMap?: { name: string } }) => v.configMap).configMap.name).toBe(cm.metadata.name)
    const image = kustomization.images[0] as { newName: string; newTag: string }
    expect(pod.containers[0].image).toBe(`${image.newName}:${image.newTag}`)
  })

  it('the pieces refer to each other: services, selectors, secret, config, scaler', () => {
    const sts = one('StatefulSet')
    const pod = sts.spec.template.spec
    const container = pod.containers[0]
    const podLabels = sts.spec.template.metadata.labels as Record<string, string>
    const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)
    expect(matches(sts.spec.selector.matchLabels, podLabels)).toBe(true)

    const services = base.filter((d) => d.kind === 'Service')
    const headless = services.find((s) => s.metadata.name === sts.spec.serviceName) as Obj
    expect(headless.spec.clusterIP).toBe('None')
    for (const s of services) {
      expect(matches(s.spec.selector, podLabels), `${s.metadata.name} selects the pods`).toBe(true)
      expect(s.spec.ports.every((p: { targetPort: string }) => container.ports.some((cp: { name: string }) => cp.name === p.targetPort))).toBe(true)
    }
    expect(matches(one('PodDisruptionBudget').spec.selector.matchLabels, podLabels)).toBe(true)
    // The ServiceMonitor scrapes through one service only: through two, every pod twice.
    const monitor = one('ServiceMonitor')
    expect(services.filter((s) => matches(monitor.spec.selector.matchLabels, s.metadata.labels ?? {})).map((s) => s.metadata.name)).toEqual([
      headless.metadata.name,
    ])

    // Instance identity: the pod name.
    expect(container.env).toContainEqual({ name: 'SLUICE_INSTANCE_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } })
    expect(sts.spec.podManagementPolicy).toBe('Parallel')
    expect(sts.spec.replicas, 'KEDA owns the pod count').toBeUndefined()
    // Longer than the gateway's default drain (Gateway.stop: 30 s).
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(30)
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true)
    expect(container.readinessProbe.exec.command.join(' ')).toContain('/admin/health')
    expect(container.livenessProbe).toBeDefined()
    expect(container.resources.requests).toBeDefined()
    expect(container.resources.limits).toBeDefined()
    expect(container.args).toEqual(['start', '--config', '/etc/sluice/gateway.yaml'])

    // Config: the generated ConfigMap is mounted where --config points.
    const configVolume = pod.volumes.find((v: { configMap?: { name: string } }) => v.configMap)
    expect(kustomization.configMapGenerator.map((g) => g.name)).toContain(configVolume.configMap.name)
    expect(container.volumeMounts).toContainEqual({ name: configVolume.name, mountPath: '/etc/sluice', readOnly: true })
    expect(kustomization.images.map((i) => i.name)).toContain(container.image)

    // Secret: the template has every variable gateway.yaml reads, under the name the pod loads.
    const secret = one('Secret', documents(join(BASE, 'secret.example.yaml')))
    expect(container.envFrom).toContainEqual({ secretRef: { name: secret.metadata.name } })
    expect(monitor.spec.endpoints[0].authorization.credentials.name).toBe(secret.metadata.name)
    const vars = [...gatewayYaml.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1] as string)
    expect(vars.length).toBeGreaterThan(0)
    expect(Object.keys(secret.stringData ?? {}).sort()).toEqual([...new Set(vars)].sort())
    expect(Object.keys(DUMMY_ENV).sort()).toEqual([...new Set(vars)].sort())

    // KEDA scales the StatefulSet, on the two metrics the gateway exports.
    const scaled = one('ScaledObject')
    expect(scaled.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: sts.metadata.name })
    const query = scaled.spec.triggers[0].metadata.query as string
    expect(query).toContain('sum(sluice_backlog_events')
    expect(query).toContain('sum(sluice_source_lag')
    expect(query).toContain(`namespace="${kustomization.namespace}"`)
  })

  it('gateway.yaml passes sluice config validation, and its code paths are in the image', async () => {
    const loaded = await parseGatewayYaml(gatewayYaml)
    const c = loaded.config
    expect(c.store).toMatchObject({ kind: 'postgres', url: DUMMY_ENV.SLUICE_POSTGRES_URL })
    expect(c.admin.key).toBe(DUMMY_ENV.SLUICE_ADMIN_KEY)
    const kinds = Object.values(c.functions).map((f) => f.trigger.kind)
    expect(new Set(kinds)).toEqual(new Set(['mqtt', 'kafka', 'amqp', 'http', 'timer']))
    // Several instances: every MQTT trigger shares its subscription.
    for (const f of Object.values(c.functions).filter((f) => f.trigger.kind === 'mqtt')) expect(f.trigger.options.share, f.name).toBeTruthy()
    // The Dockerfile copies functions/ to /app/functions.
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
    expect(dockerfile).toMatch(/^WORKDIR \/app$/m)
    expect(dockerfile).toMatch(/^COPY .*functions \.\/functions$/m)
    for (const f of Object.values(c.functions)) {
      expect(f.codePath.startsWith('/app/functions/'), f.codePath).toBe(true)
      expect(existsSync(join(ROOT, f.codePath.slice('/app/'.length))), f.codePath).toBe(true)
    }
  })
})

describe('deploy/kubernetes validation catches typos', () => {
  const sts = (): Obj => structuredClone(one('StatefulSet'))

  it('an unknown field in the pod template', () => {
    const doc = sts()
    doc.spec.template.spec.containers[0].livenessprobe = doc.spec.template.spec.containers[0].livenessProbe
    expect(validateManifest(doc)).toContainEqual(expect.stringMatching(/^\/spec\/template\/spec\/containers\/0 .*\(livenessprobe\)$/))
  })

  it('a number written as a string', () => {
    const doc = sts()
    doc.spec.template.spec.terminationGracePeriodSeconds = '60'
    expect(validateManifest(doc)).toContainEqual(expect.stringMatching(/^\/spec\/template\/spec\/terminationGracePeriodSeconds must be integer/))
  })

  it('a misspelled ScaledObject field and scaler setting', () => {
    const doc = structuredClone(one('ScaledObject'))
    doc.spec.minReplicas = 3
    expect(validateManifest(doc)).toContainEqual(expect.stringMatching(/^\/spec .*\(minReplicas\)$/))
    const trigger = structuredClone(one('ScaledObject'))
    trigger.spec.triggers[0].metadata.treshold = '10'
    expect(validateManifest(trigger), 'metadata is a free map in the CRD').toEqual([])
    expect(validateScalerMetadata(trigger)).toEqual([expect.stringContaining('/spec/triggers/0/metadata/treshold is not a prometheus scaler setting')])
  })

  it('a misspelled ServiceMonitor field and a wrong kind of metadata', () => {
    const doc = structuredClone(one('ServiceMonitor'))
    doc.spec.endpoints[0].intervall = '15s'
    ;(doc.metadata as Record<string, unknown>).label = {}
    const problems = validateManifest(doc)
    expect(problems).toContainEqual(expect.stringMatching(/^\/spec\/endpoints\/0 .*\(intervall\)$/))
    expect(problems).toContainEqual(expect.stringMatching(/^\/metadata .*\(label\)$/))
  })

  it('a kind without a stored schema', () => {
    expect(validateManifest({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' } })).toEqual([
      expect.stringContaining('no schema stored for apps/v1 Deployment'),
    ])
  })

  it('a misspelled key in gateway.yaml', async () => {
    const text = gatewayYaml.replace('store: { kind: postgres,', 'store: { kind: postgres, pool_max: 4,')
    expect(text).not.toBe(gatewayYaml)
    const err = await parseGatewayYaml(text).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect((err as { code?: string }).code).toBe('SLUICE_ERR_CONFIG_INVALID')
    expect(issuesOf(err)).toContainEqual(expect.objectContaining({ code: 'SLUICE_ERR_CONFIG_UNKNOWN_KEY', path: 'store.pool_max' }))
  })
})
