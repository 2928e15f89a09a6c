// The shapes of the API's answers and requests by name: the OpenAPI document's
// components.schemas (openapi.ts turns this registry into them). A route names the shapes it
// answers with; present.ts builds them.
import { z } from 'zod'

export const SHAPES = z.registry<{ id: string; description: string }>()

export function shape<T extends z.ZodType>(id: string, description: string, schema: T): T {
  SHAPES.add(schema, { id, description })
  return schema
}

export const nodeId = z.int().min(0).describe('a node id')
