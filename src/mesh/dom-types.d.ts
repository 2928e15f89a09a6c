// libp2p 3's .d.ts files name a few DOM types that @types/node does not declare globally.
// tsconfig's lib is ES2024 without DOM (this is a Node program), so declare just those,
// with the DOM's own shapes: if DOM is ever added to lib, these merge with it unchanged.

interface EventInit {
  bubbles?: boolean
  cancelable?: boolean
  composed?: boolean
}

// biome-ignore lint/suspicious/noExplicitAny: must match lib.dom's declaration to merge with it
interface CustomEventInit<T = any> extends EventInit {
  detail?: T
}

interface AddEventListenerOptions extends EventListenerOptions {
  once?: boolean
  passive?: boolean
  signal?: AbortSignal
}

interface RsaOtherPrimesInfo {
  d?: string
  r?: string
  t?: string
}

interface JsonWebKey {
  alg?: string
  crv?: string
  d?: string
  dp?: string
  dq?: string
  e?: string
  ext?: boolean
  k?: string
  key_ops?: string[]
  kty?: string
  n?: string
  oth?: RsaOtherPrimesInfo[]
  p?: string
  q?: string
  qi?: string
  use?: string
  x?: string
  y?: string
}

// Node's WebCrypto key, under the global name the DOM gives it
type NodeWebCryptoKey = import('node:crypto').webcrypto.CryptoKey
interface CryptoKey extends NodeWebCryptoKey {}

interface CryptoKeyPair {
  privateKey: CryptoKey
  publicKey: CryptoKey
}
