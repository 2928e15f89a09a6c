// The provider seam: embedded by default, docker on request, anything else refused; asking for
// docker where no engine runs (this machine) fails with a clear message instead of hanging.
import { describe, expect, it } from 'vitest'
import { providerName } from '../fixtures/pg.js'

describe('PostgreSQL provider for the tests', () => {
  it('defaults to the embedded binaries', () => {
    expect(providerName({})).toBe('embedded')
    expect(providerName({ TRAKTOR_TEST_PG: 'docker' })).toBe('docker')
    expect(() => providerName({ TRAKTOR_TEST_PG: 'podman' })).toThrow(
      /must be "embedded" or "docker"/,
    )
  })

  it('says plainly when docker is asked for and no engine is reachable', async () => {
    const { startDockerServers } = await import('../fixtures/pg-docker.js')
    let engine = true
    try {
      const { getContainerRuntimeClient } = await import('testcontainers')
      await getContainerRuntimeClient()
    } catch {
      engine = false
    }
    if (engine) return // a machine with Docker: the whole suite runs on it with TRAKTOR_TEST_PG=docker
    await expect(startDockerServers(1, () => ({}))).rejects.toThrow(/no Docker engine is reachable/)
  })
})
