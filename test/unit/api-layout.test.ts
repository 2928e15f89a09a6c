// The API's rooms (issue 9): a route imports no other route (answers are built by present.ts, the
// route list is routes/index.ts), and the CLI takes only the types of the server's answers
// from src/api, so `traktor ctl` never loads fastify or zod.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const SRC = path.resolve(import.meta.dirname, '../../src')

/** Every import of a file: what it names, and whether it takes types only. */
function imports(file: string): Array<{ from: string; typeOnly: boolean }> {
  const text = fs.readFileSync(file, 'utf8')
  return [...text.matchAll(/^import\s+(type\s+)?(?:[\s\S]*?\s+from\s+)?'([^']+)'/gm)].map((m) => ({
    from: m[2] as string,
    typeOnly: m[1] !== undefined,
  }))
}

const filesIn = (dir: string) =>
  fs
    .readdirSync(path.join(SRC, dir))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join(SRC, dir, f))

describe('the API layout', () => {
  it('no route imports another route', () => {
    const routes = filesIn('api/routes').filter((f) => !f.endsWith('index.ts'))
    expect(routes.length).toBeGreaterThan(4)
    const sideways = routes.flatMap((f) =>
      imports(f)
        .filter((i) => i.from.startsWith('./'))
        .map((i) => `${path.basename(f)} imports ${i.from}`),
    )
    expect(sideways).toEqual([])
  })

  it('ctl takes only types from src/api', () => {
    const found = filesIn('ctl').flatMap((f) =>
      imports(f)
        .filter((i) => i.from.includes('/api/'))
        .map((i) => ({ file: path.basename(f), ...i })),
    )
    // render.ts and report.ts read the answers by the names present.ts gives them
    expect(found.map((i) => i.file).sort()).toEqual(['render.ts', 'report.ts'])
    expect(found.filter((i) => !i.typeOnly)).toEqual([])
  })
})
