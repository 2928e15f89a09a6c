// Every shape of the API, by the name the OpenAPI document gives it.
export * from './check.js'
export * from './cluster.js'
export * from './node.js'
export { SHAPES } from './registry.js'
export * from './rpc.js'
