import { describe, expect, it, vi } from 'vitest'
import {
  ApiClient,
  ApiError,
  NOT_LOGGED_IN,
  REFRESH_MARGIN_MS,
  SESSION_EXPIRED,
  buildUrl,
  type Session,
} from '../../src/api/client'
import { fakeFetch, json, memoryStore, session, tokens, type Call } from './helpers'

const NOW = 1_700_000_000_000

function setup(handler: (call: Call) => Response | Promise<Response>, initial: Session | null = session(1, NOW + 600_000)) {
  const { fetch, calls } = fakeFetch(handler)
  const store = memoryStore(initial)
  const onSessionExpired = vi.fn()
  const client = new ApiClient({ store, fetch, now: () => NOW, onSessionExpired })
  return { client, calls, store, onSessionExpired }
}

/** A server whose valid access token is `access-<n>` and that refreshes refresh-<n> to <n+1>. */
function server(valid = { access: 'access-2', refresh: 'refresh-1' }) {
  return (call: Call) => {
    if (call.url === '/auth/refresh') {
      const sent = (call.body as { refresh_token: string }).refresh_token
      return sent === valid.refresh ? json(200, tokens(2)) : json(401, { msg: 'Invalid refresh token' })
    }
    return call.headers.Authorization === `Bearer ${valid.access}`
      ? json(200, { ok: true })
      : json(401, { msg: 'Token has expired' })
  }
}

describe('ApiClient requests', () => {
  it('sends the access token and JSON, and parses the answer', async () => {
    const { client, calls } = setup(() => json(201, { id: 7 }))
    expect(await client.post('/api/v1/devices', { name: 'kitchen' })).toEqual({ id: 7 })
    expect(calls[0]).toMatchObject({
      method: 'POST',
      url: '/api/v1/devices',
      body: { name: 'kitchen' },
      headers: { Authorization: 'Bearer access-1', 'Content-Type': 'application/json' },
    })
  })

  it('turns {"msg"} into an ApiError, with the field errors of a 422', async () => {
    const { client } = setup(() =>
      json(422, {
        msg: 'Invalid request',
        errors: [
          { field: 'name', message: 'too long' },
          { field: 'name', message: 'second' },
        ],
      }),
    )
    const error = await client.post('/x', {}).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 422, message: 'Invalid request', fields: { name: 'too long' } })
  })

  it('answers 401 without a request when nobody is logged in', async () => {
    const { client, calls } = setup(() => json(200, {}), null)
    await expect(client.get('/auth/me')).rejects.toMatchObject({ status: 401, message: NOT_LOGGED_IN })
    expect(calls).toHaveLength(0)
  })

  it('sends no token on public routes', async () => {
    const { client, calls } = setup(() => json(200, tokens(5)))
    await client.post('/auth/login', { email: 'a', password: 'b' }, { auth: false })
    expect(calls[0]!.headers.Authorization).toBeUndefined()
  })

  it('reports a network failure as status 0 and keeps the session', async () => {
    const { client, store } = setup(() => Promise.reject(new TypeError('Failed to fetch')))
    await expect(client.get('/x')).rejects.toMatchObject({ status: 0 })
    expect(store.value).not.toBeNull()
  })

  it('returns an accepted error status as an answer (a 503 /status)', async () => {
    const { client } = setup(() => json(503, { status: 'degraded' }))
    expect(await client.get('/status', { auth: false, accept: [503] })).toEqual({ status: 'degraded' })
  })

  it('builds query strings without empty values', () => {
    expect(buildUrl('', '/r', { topic: 'a/b', from: undefined, limit: 5, x: '' })).toBe('/r?topic=a%2Fb&limit=5')
  })
})

describe('silent refresh', () => {
  it('refreshes after a 401 and retries once with the new token', async () => {
    const { client, calls, store, onSessionExpired } = setup(server())
    expect(await client.get('/api/v1/topics')).toEqual({ ok: true })
    expect(calls.map((c) => `${c.method} ${c.url} ${c.headers.Authorization ?? ''}`.trim())).toEqual([
      'GET /api/v1/topics Bearer access-1',
      'POST /auth/refresh',
      'GET /api/v1/topics Bearer access-2',
    ])
    expect(calls[1]!.body).toEqual({ refresh_token: 'refresh-1' })
    expect(store.value).toEqual({
      accessToken: 'access-2',
      refreshToken: 'refresh-2',
      expiresAt: NOW + 900_000,
      lifetimeMs: 900_000,
    })
    expect(onSessionExpired).not.toHaveBeenCalled()
  })

  it('runs one refresh for many requests refused at once', async () => {
    const { client, calls } = setup(server())
    const results = await Promise.all([client.get('/a'), client.get('/b'), client.get('/c')])
    expect(results).toEqual([{ ok: true }, { ok: true }, { ok: true }])
    expect(calls.filter((c) => c.url === '/auth/refresh')).toHaveLength(1)
  })

  it('refreshes before the request when the token is about to expire', async () => {
    const { client, calls } = setup(server(), session(1, NOW + REFRESH_MARGIN_MS - 1))
    await client.get('/a')
    expect(calls.map((c) => c.url)).toEqual(['/auth/refresh', '/a'])
  })

  it('ends the session when the refresh token is refused', async () => {
    const { client, store, onSessionExpired } = setup(server({ access: 'none', refresh: 'other' }))
    await expect(client.get('/a')).rejects.toMatchObject({ status: 401, message: SESSION_EXPIRED })
    expect(store.value).toBeNull()
    expect(client.isAuthenticated).toBe(false)
    expect(onSessionExpired).toHaveBeenCalledOnce()
    expect(onSessionExpired).toHaveBeenCalledWith(SESSION_EXPIRED)
  })

  it('ends the session when the retry is refused too (revoked server-side)', async () => {
    const { client, calls, onSessionExpired } = setup(server({ access: 'never', refresh: 'refresh-1' }))
    await expect(client.get('/a')).rejects.toMatchObject({ status: 401, message: SESSION_EXPIRED })
    expect(calls.filter((c) => c.url === '/a')).toHaveLength(2) // retried exactly once
    expect(onSessionExpired).toHaveBeenCalledOnce()
  })

  it('takes over the session another tab refreshed instead of spending the old refresh token', async () => {
    const { client, calls, store } = setup(server())
    store.value = session(2, NOW + 900_000) // the other tab's refresh, seen through storage
    expect(await client.get('/a')).toEqual({ ok: true })
    expect(calls.map((c) => c.url)).toEqual(['/a', '/a'])
  })

  it('keeps the session when the refresh cannot reach the server', async () => {
    const { client, store } = setup((call) =>
      call.url === '/auth/refresh' ? Promise.reject(new TypeError('offline')) : json(401, { msg: 'expired' }),
    )
    await expect(client.get('/a')).rejects.toMatchObject({ status: 0 })
    expect(store.value).not.toBeNull()
  })

  it('serialises refreshes through the cross-tab lock', async () => {
    const { fetch } = fakeFetch(server())
    const names: string[] = []
    const lock = <T>(name: string, task: () => Promise<T>): Promise<T> => {
      names.push(name)
      return task()
    }
    const client = new ApiClient({ store: memoryStore(session(1, NOW + 600_000)), fetch, now: () => NOW, lock })
    await client.get('/a')
    expect(names).toEqual(['sensorcloud-refresh'])
  })

  it('refreshes a third of the lifetime before expiry when tokens are short-lived', async () => {
    const short = { ...session(1, NOW + 11_000), lifetimeMs: 30_000 }
    const { client, calls } = setup(server(), short)
    expect(await client.freshToken()).toBe('access-1') // 11 s left of 30: not yet
    expect(calls).toHaveLength(0)
    const { client: later } = setup(server(), { ...short, expiresAt: NOW + 9_000 })
    expect(await later.freshToken()).toBe('access-2')
  })

  it('freshToken refreshes when asked for a longer validity', async () => {
    const { client } = setup(server(), session(1, NOW + 60_000))
    expect(await client.freshToken()).toBe('access-1')
    expect(await client.freshToken(120_000)).toBe('access-2')
  })

  it('freshToken gives the current token, or null without a session', async () => {
    const { client } = setup(server())
    expect(await client.freshToken()).toBe('access-1')
    client.clear()
    expect(await client.freshToken()).toBeNull()
  })
})
