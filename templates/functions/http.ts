import type { Handler, HttpEvent, HttpResponse } from 'sluice/function'

/** The JSON body this function accepts on POST (GET requests have none). */
interface Greeting {
  name?: string
}

/**
 * {{name}}: an HTTP function (one request per invocation). Whatever it returns as
 * { status, headers, body } is the reply; any other value is sent as a 200 JSON body.
 */
const handler: Handler<HttpEvent<Greeting | null>, HttpResponse> = async ([req], ctx) => {
  const fromQuery = req?.meta.query.name
  const name = req?.body?.name ?? (typeof fromQuery === 'string' ? fromQuery : 'world')
  ctx.log(`${req?.meta.method} ${req?.meta.path} for ${name}`)
  return {
    status: 200,
    headers: { 'cache-control': 'no-store' },
    body: { message: `Hello, ${name}!`, invocationId: ctx.invocationId },
  }
}

export default handler
