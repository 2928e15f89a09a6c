import { describe, expect, it } from 'vitest'
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  decodeGossip,
  decodeRpcRequest,
  decodeRpcResponse,
  encodeGossip,
  encodeRpcRequest,
  encodeRpcResponse,
  topicString,
  type WireTopic,
} from '../../src/mesh/codec.js'

const enc = (x: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(x))
const MAX = DEFAULT_MAX_MESSAGE_BYTES
const PEER = '12D3KooWHdrCPwKAdf8owf56rUB2wgyqqC1A48cbpe6Arao8i5QX'

const heartbeat = {
  v: 1,
  kind: 'heartbeat',
  nodeId: 1,
  peerId: PEER,
  postgres: 'host=10.0.0.1 port=5432 dbname=app user=traktor',
  version: '0.1.0',
  incarnation: 3,
  state: 'ready',
  replicasetVersion: 4,
  addrs: [`/ip4/10.0.0.1/tcp/4001/p2p/${PEER}`],
  sentAt: 1_700_000_000_000,
}

const conflict = {
  v: 1,
  kind: 'conflict',
  nodeId: 2,
  subscription: 'trktr_sub_1',
  lsn: '0/1A2B3C4',
  relation: 'public.accounts',
  sqlState: '23505',
  reason: 'duplicate key value violates unique constraint',
  action: 'skip',
  resolved: null,
  occurred: '2024-01-01T00:00:00.000Z',
}

function reasonOf(topic: WireTopic, payload: unknown, max = MAX): string {
  const d = decodeGossip(topic, enc(payload), max)
  return d.ok ? 'ok' : d.reason
}

describe('gossip schemas', () => {
  it('accept good payloads', () => {
    expect(reasonOf('membership', heartbeat)).toBe('ok')
    expect(reasonOf('conflicts', conflict)).toBe('ok')
    expect(reasonOf('peers', { v: 1, kind: 'peers', peerId: PEER, addrs: [] })).toBe('ok')
  })

  it.each([
    ['a negative nodeId', { nodeId: -1 }],
    ['a fractional nodeId', { nodeId: 1.5 }],
    ['an unknown state', { state: 'dead' }],
    ['a password in the connection string', { postgres: 'host=x password=secret' }],
    ['a password in a URI', { postgres: 'postgresql://u:secret@h/db' }],
    ['an invalid connection string', { postgres: "host='unterminated" }],
    ['17 addresses', { addrs: Array.from({ length: 17 }, () => '/ip4/1.2.3.4/tcp/1') }],
    ['a negative replicaset version', { replicasetVersion: -1 }],
    ['a string sentAt', { sentAt: 'now' }],
    ['another kind', { kind: 'conflict' }],
    ['no peerId', { peerId: undefined }],
  ])('reject a heartbeat with %s', (_what, change) => {
    expect(reasonOf('membership', { ...heartbeat, ...change })).toBe('bad-schema')
  })

  it('reject conflicts missing required fields', () => {
    expect(reasonOf('conflicts', { ...conflict, relation: undefined })).toBe('bad-schema')
    expect(reasonOf('conflicts', { ...conflict, sqlState: 23505 })).toBe('bad-schema')
    expect(reasonOf('conflicts', { ...conflict, nodeId: 'zero' })).toBe('bad-schema')
  })

  it('reject another version, and a missing one', () => {
    expect(reasonOf('membership', { ...heartbeat, v: 2 })).toBe('bad-version')
    expect(reasonOf('conflicts', { ...conflict, v: undefined })).toBe('bad-version')
  })

  it('reject what is not a JSON object', () => {
    expect(decodeGossip('membership', new TextEncoder().encode('{nope'), MAX)).toMatchObject({
      ok: false,
      reason: 'not-json',
    })
    expect(reasonOf('membership', [heartbeat])).toBe('not-json')
    expect(reasonOf('membership', null)).toBe('not-json')
    expect(decodeGossip('membership', new Uint8Array([0xff, 0xfe, 0x7b]), MAX)).toMatchObject({
      reason: 'not-json',
    })
  })

  it('reject a payload over the size cap before parsing it', () => {
    const big = { ...conflict, reason: 'x'.repeat(MAX) }
    expect(reasonOf('conflicts', big)).toBe('too-large')
    expect(reasonOf('membership', heartbeat, 100)).toBe('too-large')
  })

  it('encode only what a receiver would accept', () => {
    expect(decodeGossip('membership', encodeGossip('membership', heartbeat, MAX), MAX).ok).toBe(
      true,
    )
    expect(() => encodeGossip('membership', { ...heartbeat, v: 2 }, MAX)).toThrow(
      expect.objectContaining({ code: 'ERR_MESH_PAYLOAD' }),
    )
    expect(() => encodeGossip('conflicts', { ...conflict, reason: 'x'.repeat(MAX) }, MAX)).toThrow(
      expect.objectContaining({ code: 'ERR_MESH_PAYLOAD' }),
    )
  })

  it('name topics per cluster and version', () => {
    expect(topicString('prod', 'membership')).toBe('/traktor/prod/membership/1')
  })
})

describe('rpc frames', () => {
  it('round-trip requests and both kinds of responses', () => {
    const req = decodeRpcRequest(
      encodeRpcRequest(7, { method: 'ping', params: { a: 1 } }, MAX),
      MAX,
    )
    expect(req).toEqual({ ok: true, value: { v: 1, id: 7, method: 'ping', params: { a: 1 } } })
    const ok = decodeRpcResponse(encodeRpcResponse(7, { ok: true, result: [1, 2] }, MAX), MAX)
    expect(ok).toEqual({ ok: true, value: { v: 1, id: 7, ok: true, result: [1, 2] } })
    const err = { ok: false as const, error: { code: 'ERR_X', message: 'no' } }
    const bad = decodeRpcResponse(encodeRpcResponse(8, err, MAX), MAX)
    expect(bad).toEqual({ ok: true, value: { v: 1, id: 8, ...err } })
  })

  it('reject malformed frames', () => {
    expect(decodeRpcRequest(enc({ v: 1, id: -1, method: 'x' }), MAX).ok).toBe(false)
    expect(decodeRpcRequest(enc({ v: 1, id: 1, method: '' }), MAX).ok).toBe(false)
    expect(decodeRpcRequest(enc({ v: 2, id: 1, method: 'x' }), MAX)).toMatchObject({
      reason: 'bad-version',
    })
    expect(decodeRpcResponse(enc({ v: 1, id: 1, ok: false }), MAX).ok).toBe(false)
    expect(decodeRpcResponse(enc({ v: 1, id: 1, ok: 'yes', result: 1 }), MAX).ok).toBe(false)
    expect(decodeRpcResponse(new TextEncoder().encode('garbage'), MAX).ok).toBe(false)
  })

  it('refuse to encode a frame over the cap or not serialisable', () => {
    expect(() => encodeRpcRequest(1, { method: 'x', params: 'y'.repeat(200) }, 100)).toThrow(
      expect.objectContaining({ code: 'ERR_MESH_PAYLOAD' }),
    )
    expect(() => encodeRpcResponse(1, { ok: true, result: 10n }, MAX)).toThrow(
      expect.objectContaining({ code: 'ERR_MESH_PAYLOAD' }),
    )
  })
})
