/**
 * JSON Schema validation of Kubernetes manifests against the schemas stored in
 * test/deploy/schemas/ (their sources and versions: schemas/README.md).
 *
 * Built-in kinds use the "standalone-strict" schemas (every object closed with
 * additionalProperties: false), so an unknown or misspelled field is an error, as with
 * `kubectl apply --validate=strict`. Custom resources use the openAPIV3Schema of their CRD, closed
 * the same way here (objects with properties and neither additionalProperties nor
 * x-kubernetes-preserve-unknown-fields), with `metadata` checked as a Kubernetes ObjectMeta.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { parse } from 'yaml'

const DIR = join(import.meta.dirname, 'schemas')
const K8S = join(DIR, 'kubernetes-v1.32.2')

type Json = Record<string, unknown>

/** apiVersion/kind -> built-in schema file. */
const BUILT_IN: Record<string, string> = {
  'v1/Namespace': 'namespace-v1.json',
  'v1/Service': 'service-v1.json',
  'v1/ConfigMap': 'configmap-v1.json',
  'v1/Secret': 'secret-v1.json',
  'apps/v1/StatefulSet': 'statefulset-apps-v1.json',
  'policy/v1/PodDisruptionBudget': 'poddisruptionbudget-policy-v1.json',
}

/** apiVersion/kind -> CRD file. */
const CUSTOM: Record<string, string> = {
  'keda.sh/v1alpha1/ScaledObject': 'keda.sh_scaledobjects.yaml',
  'keda.sh/v1alpha1/TriggerAuthentication': 'keda.sh_triggerauthentications.yaml',
  'monitoring.coreos.com/v1/ServiceMonitor': 'monitoring.coreos.com_servicemonitors.yaml',
}

export const KNOWN_KINDS = [...Object.keys(BUILT_IN), ...Object.keys(CUSTOM)]

function readJson(file: string): Json {
  const schema = JSON.parse(readFileSync(file, 'utf8')) as Json
  // "http://json-schema.org/schema#" is no draft ajv knows; the schemas are draft-04/07 compatible.
  delete schema.$schema
  return schema
}

/** Closes every object schema that lists properties and says nothing about others. */
function closeObjects(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(closeObjects)
  if (typeof node !== 'object' || node === null) return
  const s = node as Json
  if (s.properties !== undefined && s.additionalProperties === undefined && s['x-kubernetes-preserve-unknown-fields'] !== true) {
    s.additionalProperties = false
  }
  for (const v of Object.values(s)) closeObjects(v)
}

function crdSchema(file: string, apiVersion: string, kind: string): Json {
  const crd = parse(readFileSync(join(DIR, 'crds', file), 'utf8')) as {
    spec: { group: string; names: { kind: string }; versions: Array<{ name: string; schema: { openAPIV3Schema: Json } }> }
  }
  const [group, version] = apiVersion.split('/')
  if (crd.spec.group !== group || crd.spec.names.kind !== kind)
    throw new Error(`${file} defines ${crd.spec.group}/${crd.spec.names.kind}, not ${group}/${kind}`)
  const v = crd.spec.versions.find((x) => x.name === version)
  if (!v) throw new Error(`${file} has no version ${version}`)
  const schema = structuredClone(v.schema.openAPIV3Schema)
  closeObjects(schema)
  const props = schema.properties as Json
  props.apiVersion = { type: 'string', enum: [apiVersion] }
  props.kind = { type: 'string', enum: [kind] }
  // The CRD says only `type: object`; the API server checks metadata as ObjectMeta.
  props.metadata = (readJson(join(K8S, 'namespace-v1.json')).properties as Json).metadata
  schema.required = [...new Set([...((schema.required as string[] | undefined) ?? []), 'apiVersion', 'kind', 'metadata'])]
  return schema
}

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false })
const compiled = new Map<string, ValidateFunction>()

function validatorFor(apiVersion: string, kind: string): ValidateFunction | undefined {
  const key = `${apiVersion}/${kind}`
  let v = compiled.get(key)
  if (v) return v
  const builtIn = BUILT_IN[key]
  const custom = CUSTOM[key]
  if (builtIn) v = ajv.compile(readJson(join(K8S, builtIn)))
  else if (custom) v = ajv.compile(crdSchema(custom, apiVersion, kind))
  else return undefined
  compiled.set(key, v)
  return v
}

function describe(e: ErrorObject): string {
  const extra = e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : ''
  return `${e.instancePath || '/'} ${e.message ?? e.keyword}${extra}`
}

/**
 * Problems of one manifest document: [] when it is valid. A kind without a stored schema is a
 * problem too (add its schema rather than skipping it).
 */
export function validateManifest(doc: unknown): string[] {
  const m = doc as { apiVersion?: unknown; kind?: unknown } | null
  if (typeof m?.apiVersion !== 'string' || typeof m.kind !== 'string') return ['/ must have apiVersion and kind']
  const validate = validatorFor(m.apiVersion, m.kind)
  if (!validate) return [`no schema stored for ${m.apiVersion} ${m.kind} (known: ${KNOWN_KINDS.join(', ')})`]
  if (validate(doc)) return []
  // anyOf/oneOf branches repeat the same complaint; one line each.
  return [...new Set((validate.errors ?? []).map(describe))]
}

/**
 * Trigger metadata keys each KEDA scaler reads (triggers[].metadata is a free string map in the
 * CRD, so the schema cannot catch a misspelled key). From the `keda:"name=..."` tags with
 * order=triggerMetadata in pkg/scalers/<type>_scaler.go of KEDA v2.20.2.
 */
export const KEDA_SCALER_METADATA: Record<string, readonly string[]> = {
  prometheus: [
    'activationThreshold',
    'awsRegion',
    'customHeaders',
    'identityOwner',
    'ignoreNullValues',
    'namespace',
    'query',
    'queryParameters',
    'serverAddress',
    'threshold',
    'timeout',
    'unsafeSsl',
  ],
  rabbitmq: [
    'activationValue',
    'excludeUnacknowledged',
    'host',
    'mode',
    'operation',
    'pageSize',
    'protocol',
    'queueLength',
    'queueName',
    'timeout',
    'unsafeSsl',
    'useRegex',
    'value',
    'vhostName',
  ],
  kafka: [
    'activationLagThreshold',
    'allowIdleConsumers',
    'awsRegion',
    'bootstrapServers',
    'consumerGroup',
    'ensureEvenDistributionOfPartitions',
    'excludePersistentLag',
    'lagThreshold',
    'limitToPartitionsWithLag',
    'offsetResetPolicy',
    'partitionLimitation',
    'sasl',
    'saslTokenProvider',
    'scaleToZeroOnInvalidOffset',
    'tls',
    'topic',
    'unsafeSsl',
    'version',
  ],
}

/** Problems of a ScaledObject's trigger metadata: unknown scaler types and keys. */
export function validateScalerMetadata(doc: unknown): string[] {
  const triggers = (doc as { spec?: { triggers?: Array<{ type?: string; metadata?: Record<string, unknown> }> } }).spec?.triggers ?? []
  return triggers.flatMap((t, i) => {
    const known = KEDA_SCALER_METADATA[t.type ?? '']
    if (!known) return [`/spec/triggers/${i}/type ${String(t.type)} has no stored key list (known: ${Object.keys(KEDA_SCALER_METADATA).join(', ')})`]
    return Object.keys(t.metadata ?? {})
      .filter((k) => !known.includes(k))
      .map((k) => `/spec/triggers/${i}/metadata/${k} is not a ${t.type} scaler setting (known: ${known.join(', ')})`)
  })
}
