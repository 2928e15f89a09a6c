// GET /metrics: the arbiter's Prometheus metrics, as text.
import type { FastifyInstance } from 'fastify'
import { doc } from '../openapi.js'

export interface MetricsText {
  readonly contentType: string
  text(): Promise<string>
}

export function metricsRoutes(metrics: MetricsText) {
  return (app: FastifyInstance): void => {
    app.get(
      '/metrics',
      {
        schema: doc({
          summary: 'Prometheus metrics (traktor_*)',
          tag: 'operations',
          answers: {
            200: [
              { content: { [metrics.contentType]: { schema: { type: 'string' } } } },
              'the text exposition format',
            ],
          },
        }),
      },
      async (_req, reply) => {
        await reply.header('content-type', metrics.contentType).send(await metrics.text())
      },
    )
  }
}
