// The gossip topics: publish checked payloads, and let through to handlers only what passes
// every check. Checks run in gossipsub's topic validators, so a rejected message is neither
// delivered nor forwarded, and counts against its sender.
import {
  type GossipSub,
  type Message,
  type TopicValidatorFn,
  TopicValidatorResult,
} from '@libp2p/gossipsub'
import { TraktorError } from '../errors.js'
import type { Logger } from '../log.js'
import {
  claimedPeerId,
  decodeGossip,
  encodeGossip,
  type PeerAnnounce,
  type RejectReason,
  TOPIC_NAMES,
  topicString,
  type WireTopic,
} from './codec.js'
import type { ClaimCheck, GossipMessage, MeshCounters, TopicName } from './types.js'

const ALL_TOPICS: readonly WireTopic[] = [...TOPIC_NAMES, 'peers']
/** Topics whose payload names its sender's peer id, which must be the signer's. */
const SELF_DESCRIBING: ReadonlySet<WireTopic> = new Set(['membership', 'peers'])
/** One warning per topic and reason in this window; the rest only counted. */
const REJECT_LOG_INTERVAL_MS = 60_000

export interface GossipComponents {
  pubsub: GossipSub
  log: Logger
  counters: MeshCounters
  selfPeerId: string
}

export interface GossipInit {
  cluster: string
  maxMessageBytes: number
  /** a peer said where it listens (already checked: the addresses are its own) */
  onAnnounce(from: string, announce: PeerAnnounce): void
  /** addresses carried by a member's heartbeat */
  onAddrs?(from: string, addrs: readonly string[]): void
}

export type Handler = (m: GossipMessage) => void

function isPublicTopic(t: WireTopic): t is TopicName {
  return t !== 'peers'
}

export class Gossip {
  private readonly byString = new Map<string, WireTopic>()
  private readonly decoded = new WeakMap<Message, unknown>()
  private readonly lastRejectLog = new Map<string, number>()
  private readonly onMessage = (evt: CustomEvent<Message>): void => this.deliver(evt.detail)

  constructor(
    private readonly components: GossipComponents,
    private readonly init: GossipInit,
    private readonly handlers: ReadonlyMap<TopicName, readonly Handler[]>,
    private readonly claimChecks: ReadonlyMap<TopicName, ClaimCheck>,
  ) {
    for (const t of ALL_TOPICS) this.byString.set(topicString(init.cluster, t), t)
  }

  start(): void {
    const { pubsub } = this.components
    for (const [str, topic] of this.byString) {
      pubsub.topicValidators.set(str, this.validator(topic))
      pubsub.subscribe(str)
    }
    pubsub.addEventListener('message', this.onMessage)
  }

  stop(): void {
    const { pubsub } = this.components
    pubsub.removeEventListener('message', this.onMessage)
    for (const str of this.byString.keys()) pubsub.topicValidators.delete(str)
  }

  topicString(topic: WireTopic): string {
    return topicString(this.init.cluster, topic)
  }

  /** Checks the payload like a receiver would (ERR_MESH_PAYLOAD on a bug), then sends it. */
  async publish(topic: WireTopic, payload: unknown): Promise<void> {
    const bytes = encodeGossip(topic, payload, this.init.maxMessageBytes)
    const claimed = SELF_DESCRIBING.has(topic) ? claimedPeerId(payload) : undefined
    if (claimed !== undefined && claimed !== this.components.selfPeerId) {
      throw new TraktorError(
        'ERR_MESH_PAYLOAD',
        `a ${topic} message must carry this node's peerId, not ${claimed}`,
      )
    }
    await this.publishRaw(topic, bytes)
    if (isPublicTopic(topic)) this.components.counters.gossipOut[topic]++
  }

  /** Sends bytes unchecked. Test-only (forged messages); production code uses publish. */
  async publishRaw(topic: WireTopic, bytes: Uint8Array): Promise<void> {
    await this.components.pubsub.publish(this.topicString(topic), bytes)
  }

  private validator(topic: WireTopic): TopicValidatorFn {
    return (_relay, msg) => {
      try {
        return this.validate(topic, msg)
      } catch (err) {
        // a throwing validator would count as Ignore; a check that cannot run rejects
        this.components.log.error({ err, topic }, 'gossip validator failed')
        return this.reject(topic, 'check-failed', '', String(err))
      }
    }
  }

  private validate(topic: WireTopic, msg: Message): TopicValidatorResult {
    if (msg.type !== 'signed') return this.reject(topic, 'unsigned', '', '')
    const from = msg.from.toString()
    const d = decodeGossip(topic, msg.data, this.init.maxMessageBytes)
    if (!d.ok) return this.reject(topic, d.reason, from, d.detail)
    if (SELF_DESCRIBING.has(topic)) {
      const claimed = claimedPeerId(d.value)
      if (claimed !== from) return this.reject(topic, 'not-sender', from, `claims ${claimed}`)
    }
    if (isPublicTopic(topic)) {
      const check = this.claimChecks.get(topic)
      if (check !== undefined && check(from, d.value) !== true) {
        return this.reject(topic, 'claim', from, 'refused by the claim check')
      }
      this.components.counters.gossipIn[topic]++
    }
    this.decoded.set(msg, d.value)
    return TopicValidatorResult.Accept
  }

  private reject(
    topic: WireTopic,
    reason: RejectReason | 'unsigned' | 'not-sender' | 'claim' | 'check-failed',
    from: string,
    detail: string,
  ): TopicValidatorResult {
    if (isPublicTopic(topic)) this.components.counters.gossipRejected[topic]++
    const key = `${topic}:${reason}`
    const now = Date.now()
    const log = this.components.log
    if (now - (this.lastRejectLog.get(key) ?? -Infinity) >= REJECT_LOG_INTERVAL_MS) {
      this.lastRejectLog.set(key, now)
      log.warn({ topic, reason, from, detail }, 'gossip message rejected (further ones counted)')
    } else {
      log.debug({ topic, reason, from, detail }, 'gossip message rejected')
    }
    return TopicValidatorResult.Reject
  }

  private deliver(msg: Message): void {
    const topic = this.byString.get(msg.topic)
    if (topic === undefined || msg.type !== 'signed') return
    const payload = this.decoded.get(msg)
    if (payload === undefined) return // not through our validator: never deliver
    const from = msg.from.toString()
    if (topic === 'peers') {
      this.init.onAnnounce(from, payload as PeerAnnounce)
      return
    }
    this.handOut(from, topic, payload)
  }

  /**
   * A payload that came straight from its sender on its own connection (hello.ts), already
   * checked against its schema and naming that sender: the claim check, then as if gossiped.
   */
  deliverDirect(from: string, topic: TopicName, payload: unknown): void {
    const check = this.claimChecks.get(topic)
    if (check !== undefined && check(from, payload) !== true) {
      this.reject(topic, 'claim', from, 'refused by the claim check (sent directly)')
      return
    }
    this.components.counters.gossipIn[topic]++
    this.handOut(from, topic, payload)
  }

  private handOut(from: string, topic: TopicName, payload: unknown): void {
    const { addrs } = payload as { addrs?: string[] } // a record has them, a suspicion not
    if (topic === 'membership' && addrs !== undefined) this.init.onAddrs?.(from, addrs)
    for (const handler of this.handlers.get(topic) ?? []) {
      try {
        handler({ from, topic, payload })
      } catch (err) {
        this.components.log.error({ err, topic, from }, 'gossip handler failed')
      }
    }
  }
}
