/**
 * @mqts/transport-tcp: RocketMQ remoting over TCP.
 *
 * ```ts
 * const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0 })
 * server.registerProcessor(RequestCode.HEART_BEAT, () => RemotingCommand.createResponse(ResponseCode.SUCCESS))
 * await server.start()
 * const client = new TcpRemotingClient()
 * const response = await client.invoke(`127.0.0.1:${server.address().port}`, RemotingCommand.createRequest(RequestCode.HEART_BEAT), 3000)
 * ```
 */
export { TcpRemotingServer } from './tcp-server.js'
export type { TcpServerOptions } from './tcp-server.js'
export { TcpRemotingClient, parseAddress } from './tcp-client.js'
export type { TcpClientOptions } from './tcp-client.js'
export { DEFAULT_MAX_BUFFERED_WRITE_BYTES, formatAddress } from './tcp-connection.js'
