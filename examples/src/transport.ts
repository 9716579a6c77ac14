import { RemotingCommand } from '@mqts/transport'
import { TcpRemotingClient, TcpRemotingServer } from '@mqts/transport-tcp'

const server = new TcpRemotingServer({ host: '127.0.0.1', port: 0 })
server.registerProcessor(34, async (request) => RemotingCommand.createResponse(0, `ok ${request.code}`))
await server.start()
const client = new TcpRemotingClient()
const response = await client.invoke(`127.0.0.1:${server.address().port}`, RemotingCommand.createRequest(34), 3000)
await client.close()
await server.stop()
console.log(response.code, response.remark)
