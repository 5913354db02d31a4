import { Type, type TLiteral, type TUnion, type SchemaOptions } from '@sinclair/typebox'

export { Type, type Static, type TSchema } from '@sinclair/typebox'

/** A string enum as a union of literals; config errors list the allowed values. */
export function OneOf<const T extends readonly string[]>(values: T, options: SchemaOptions = {}): TUnion<Array<TLiteral<T[number]>>> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  ) as TUnion<Array<TLiteral<T[number]>>>
}

/** An object schema that rejects unknown keys (every config section uses it). */
export const Strict = { additionalProperties: false } as const
