import { OneOf, Strict, Type, type Static } from '../../src/sdk/index.js'

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const

export const httpTriggerSchema = Type.Object(
  {
    route: Type.String({
      minLength: 1,
      maxLength: 512,
      // Segments of literals and {name} parameters; the last one may be a {*name} wildcard (see routeUrl).
      pattern: '^(?:[A-Za-z0-9._~{}\\-]+(?:/[A-Za-z0-9._~{}\\-]+)*(?:/\\{\\*[A-Za-z0-9_]*\\})?|\\{\\*[A-Za-z0-9_]*\\})$',
      description: 'Path below /api/, with {name} parameters and an optional last {*name} wildcard, e.g. stations/{id} or files/{*path}.',
    }),
    methods: Type.Array(OneOf(HTTP_METHODS), {
      minItems: 1,
      uniqueItems: true,
      default: ['GET', 'POST'],
      description: 'HTTP methods the function answers.',
    }),
    auth: OneOf(['anonymous', 'function'], {
      default: 'function',
      description: 'function: callers send a function key in x-functions-key (create keys with `sluice keys create`).',
    }),
  },
  Strict,
)

export type HttpTriggerOptions = Static<typeof httpTriggerSchema>
