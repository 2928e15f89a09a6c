// Wire envelopes: versioned JSON, size-capped, checked against a schema per topic. Nothing
// here touches the network, so every rule is unit-tested on bytes.
import { z } from 'zod'
import { TraktorError } from '../errors.js'
import { parseConninfo, SECRET_KEYWORDS } from '../libpq/conninfo.js'
import type { RpcRequest, RpcResponse, TopicName } from './types.js'

/** The envelope version every message carries as `v`. */
export const WIRE_VERSION = 1
/** Default cap on one gossip payload, in bytes of JSON. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
/** Default cap on one RPC frame: larger, since fan-out results (status of every table) grow. */
export const DEFAULT_MAX_RPC_BYTES = 1024 * 1024
export const MAX_HEARTBEAT_ADDRS = 16
export const MAX_ANNOUNCED_ADDRS = 32

// Proposals travel over the request/response protocol (prepare, commit, ask, retried until
// answered), never over gossip: there is no proposals topic.
export const TOPIC_NAMES: readonly TopicName[] = ['membership', 'conflicts']

const v = z.literal(WIRE_VERSION)
const nodeId = z.int().min(0)
const peerId = z.string().min(1).max(128)
const multiaddr = z.string().min(1).max(512)

// A connection string peers may see: valid libpq syntax and no secrets in it.
const publicConninfo = z
  .string()
  .max(4096)
  .refine(
    (s) => {
      try {
        const params = parseConninfo(s)
        return SECRET_KEYWORDS.every((k) => !params.has(k))
      } catch {
        return false
      }
    },
    { error: 'must be a connection string without a password' },
  )

export const MembershipHeartbeatSchema = z.object({
  v,
  kind: z.literal('heartbeat'),
  nodeId,
  peerId,
  postgres: publicConninfo,
  version: z.string().max(64),
  incarnation: z.int(),
  state: z.enum(['joining', 'copying', 'ready', 'removed']),
  /** while copying the cluster's data: how far (0-100); absent otherwise and from old peers */
  joinPercent: z.int().min(0).max(100).optional(),
  replicasetVersion: z.int().min(0),
  /** the newest change to the member's roster of removed nodes (ms); absent from old peers */
  rosterVersion: z.int().min(0).optional(),
  /** whether the member's arbiter reaches its own PostgreSQL; absent from old peers */
  postgresUp: z.boolean().optional(),
  /** the member's commit mode and when it was set (0: from its config); absent from old peers */
  commit: z
    .object({
      mode: z.enum(['async', 'sync']),
      quorum: z.int().min(1).max(10_000).optional(),
      changed: z.int().min(0),
    })
    .optional(),
  addrs: z.array(multiaddr).max(MAX_HEARTBEAT_ADDRS),
  sentAt: z.number(),
  /** counts up within one run (incarnation); absent from old peers, who are ordered by sentAt */
  seq: z.int().min(0).optional(),
  /** the member's own signature of the rest (record-sig.ts): lets any peer pass the record on */
  sig: z.string().max(200).optional(),
})
export type MembershipHeartbeat = z.infer<typeof MembershipHeartbeatSchema>

/**
 * In a sparse mesh (overlay.ts): the sender, `peerId`, holds the member `of` suspect or dead,
 * as of that member's record `seq` of run `incarnation` (the member answers with a newer one).
 */
export const MembershipSuspicionSchema = z.object({
  v,
  kind: z.literal('suspicion'),
  peerId,
  of: peerId,
  incarnation: z.int(),
  seq: z.int().min(0),
  state: z.enum(['suspect', 'dead']),
})
export type MembershipSuspicion = z.infer<typeof MembershipSuspicionSchema>

export const MembershipMessageSchema = z.discriminatedUnion('kind', [
  MembershipHeartbeatSchema,
  MembershipSuspicionSchema,
])

export const ConflictEventSchema = z.object({
  v,
  kind: z.literal('conflict'),
  nodeId,
  subscription: z.string().max(256),
  lsn: z.string().max(32),
  relation: z.string().max(512).nullable(),
  sqlState: z.string().max(5),
  reason: z.string().max(8192).nullable(),
  action: z.string().max(64),
  resolved: z.string().max(64).nullable(),
  occurred: z.string().max(64),
})
export type ConflictEvent = z.infer<typeof ConflictEventSchema>

/** Internal topic: "here is where I listen", so that every node dials every other. */
export const PeerAnnounceSchema = z.object({
  v,
  kind: z.literal('peers'),
  peerId,
  addrs: z.array(multiaddr).max(MAX_ANNOUNCED_ADDRS),
})
export type PeerAnnounce = z.infer<typeof PeerAnnounceSchema>

/**
 * The direct hello on every new connection (hello.ts): the sender's membership record, if it
 * has one yet, and the peers it is connected to, each with its own addresses.
 */
export const MAX_HELLO_PEERS = 1024
export const HelloSchema = z.object({
  v,
  kind: z.literal('hello'),
  record: MembershipHeartbeatSchema.optional(),
  peers: z
    .array(z.object({ peerId, addrs: z.array(multiaddr).max(MAX_ANNOUNCED_ADDRS) }))
    .max(MAX_HELLO_PEERS),
  /** other members' records, each signed by its member (record-sig.ts) */
  relayed: z.array(MembershipHeartbeatSchema).max(MAX_HELLO_PEERS).optional(),
  /** how many members' records the sender holds (a full mesh relays to a peer behind it) */
  members: z.int().min(0).max(MAX_HELLO_PEERS).optional(),
})
export type Hello = z.infer<typeof HelloSchema>

/** The internal topic's name, next to the public ones. */
export type WireTopic = TopicName | 'peers'

export const TOPIC_SCHEMAS: Record<WireTopic, z.ZodType> = {
  membership: MembershipMessageSchema,
  conflicts: ConflictEventSchema,
  peers: PeerAnnounceSchema,
}

/** `/traktor/<cluster>/<name>/1`: per cluster, versioned. */
export function topicString(cluster: string, name: WireTopic): string {
  return `/traktor/${cluster}/${name}/${WIRE_VERSION}`
}

export type RejectReason = 'too-large' | 'not-json' | 'bad-version' | 'bad-schema'

export type Decoded<T> =
  | { ok: true; value: T }
  | { ok: false; reason: RejectReason; detail: string }

function reject(
  reason: RejectReason,
  detail: string,
): { ok: false; reason: RejectReason; detail: string } {
  return { ok: false, reason, detail }
}

// JSON.parse of untrusted bytes, then the envelope version, then the schema. Never throws.
function decodeWith<T>(schema: z.ZodType<T>, bytes: Uint8Array, maxBytes: number): Decoded<T> {
  if (bytes.byteLength > maxBytes) {
    return reject('too-large', `${bytes.byteLength} bytes > ${maxBytes}`)
  }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (err) {
    return reject('not-json', err instanceof Error ? err.message : String(err))
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return reject('not-json', 'not a JSON object')
  }
  const version = (json as { v?: unknown }).v
  if (version !== WIRE_VERSION) {
    return reject(
      'bad-version',
      `v is ${JSON.stringify(version) ?? 'missing'}, expected ${WIRE_VERSION}`,
    )
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) {
    return reject('bad-schema', z.prettifyError(parsed.error).replaceAll('\n', '; '))
  }
  return { ok: true, value: parsed.data }
}

function encodeWith(schema: z.ZodType, value: unknown, maxBytes: number, what: string): Uint8Array {
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    throw new TraktorError(
      'ERR_MESH_PAYLOAD',
      `${what} does not match its schema: ${z.prettifyError(parsed.error)}`,
    )
  }
  let text: string
  try {
    text = JSON.stringify(parsed.data)
  } catch (err) {
    throw new TraktorError('ERR_MESH_PAYLOAD', `${what} is not serialisable as JSON`, {
      cause: err,
    })
  }
  const bytes = new TextEncoder().encode(text)
  if (bytes.byteLength > maxBytes) {
    throw new TraktorError(
      'ERR_MESH_PAYLOAD',
      `${what} is ${bytes.byteLength} bytes, more than the limit of ${maxBytes}`,
    )
  }
  return bytes
}

export function decodeGossip(
  topic: WireTopic,
  bytes: Uint8Array,
  maxBytes: number,
): Decoded<unknown> {
  return decodeWith(TOPIC_SCHEMAS[topic], bytes, maxBytes)
}

/** Checks and serialises a payload before publishing; throws ERR_MESH_PAYLOAD (a caller bug). */
export function encodeGossip(topic: WireTopic, payload: unknown, maxBytes: number): Uint8Array {
  return encodeWith(TOPIC_SCHEMAS[topic], payload, maxBytes, `a ${topic} message`)
}

export function decodeHello(bytes: Uint8Array, maxBytes: number): Decoded<Hello> {
  return decodeWith(HelloSchema, bytes, maxBytes)
}

export function encodeHello(hello: Hello, maxBytes: number): Uint8Array {
  return encodeWith(HelloSchema, hello, maxBytes, 'a hello')
}

/** The peer id a payload claims to come from, if its schema has one. */
export function claimedPeerId(payload: unknown): string | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined
  const p = (payload as { peerId?: unknown }).peerId
  return typeof p === 'string' ? p : undefined
}

// --- RPC frames on /traktor/rpc/1.0.0 -------------------------------------------------------

export const RpcRequestFrameSchema = z.object({
  v,
  id: z.int().min(0),
  method: z.string().min(1).max(256),
  params: z.unknown(),
})
export type RpcRequestFrame = z.infer<typeof RpcRequestFrameSchema>

const rpcError = z.object({ code: z.string().min(1).max(128), message: z.string() })

export const RpcResponseFrameSchema = z.discriminatedUnion('ok', [
  z.object({ v, id: z.int().min(0), ok: z.literal(true), result: z.unknown() }),
  z.object({ v, id: z.int().min(0), ok: z.literal(false), error: rpcError }),
])
export type RpcResponseFrame = z.infer<typeof RpcResponseFrameSchema>

export function encodeRpcRequest(id: number, req: RpcRequest, maxBytes: number): Uint8Array {
  return encodeWith(
    RpcRequestFrameSchema,
    { v: WIRE_VERSION, id, method: req.method, params: req.params },
    maxBytes,
    `the request ${req.method}`,
  )
}

export function encodeRpcResponse(id: number, res: RpcResponse, maxBytes: number): Uint8Array {
  return encodeWith(
    RpcResponseFrameSchema,
    { v: WIRE_VERSION, id, ...res },
    maxBytes,
    'the response',
  )
}

export function decodeRpcRequest(bytes: Uint8Array, maxBytes: number): Decoded<RpcRequestFrame> {
  return decodeWith(RpcRequestFrameSchema, bytes, maxBytes)
}

export function decodeRpcResponse(bytes: Uint8Array, maxBytes: number): Decoded<RpcResponseFrame> {
  return decodeWith(RpcResponseFrameSchema, bytes, maxBytes)
}

/** The response part of a frame, as the RpcHandler contract shapes it. */
export function responseOf(frame: RpcResponseFrame): RpcResponse {
  return frame.ok
    ? { ok: true, result: frame.result }
    : { ok: false, error: { code: frame.error.code, message: frame.error.message } }
}
