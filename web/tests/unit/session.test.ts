// @vitest-environment happy-dom
// The session store and the router guard, over the real client and localStorage, with the
// network replaced by a scripted fetch.
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { User } from '../../src/api/types'
import { fakeFetch, json, tokens, type Call } from './helpers'

const ADA: User = { id: 1, email: 'ada@example.com', username: 'ada', active: true, role: 'user', created_at: '2024-01-01T00:00:00Z' }

function backendWith(me: User, extra: (call: Call) => Response | undefined = () => undefined) {
  return fakeFetch((call) => {
    const answer = extra(call)
    if (answer) return answer
    if (call.url === '/auth/login') return json(200, tokens(1))
    if (call.url === '/auth/register') return json(201, me)
    if (call.url === '/auth/logout') return json(200, { message: 'Successfully logged out.' })
    if (call.url === '/auth/refresh') return json(401, { msg: 'Invalid refresh token' })
    if (call.url === '/auth/me') {
      return call.headers.Authorization === 'Bearer access-1' ? json(200, me) : json(401, { msg: 'Token has expired' })
    }
    return json(404, { msg: 'Not Found' })
  })
}

async function load(fetch: typeof globalThis.fetch) {
  vi.stubGlobal('fetch', fetch)
  vi.resetModules()
  setActivePinia(createPinia())
  const { useSession } = await import('../../src/stores/session')
  const api = await import('../../src/api')
  return { session: useSession(), api }
}

beforeEach(() => {
  localStorage.clear()
  vi.unstubAllGlobals()
})

describe('session store', () => {
  it('logs in, keeps the session in localStorage and knows the user', async () => {
    const { fetch } = backendWith(ADA)
    const { session } = await load(fetch)
    expect(session.isAuthenticated).toBe(false)
    await session.login(' ada@example.com ', 'pw')
    expect(session.isAuthenticated).toBe(true)
    expect(session.user).toEqual(ADA)
    expect(session.isAdmin).toBe(false)
    expect(JSON.parse(localStorage.getItem('sensorcloud.session')!)).toMatchObject({
      accessToken: 'access-1',
      refreshToken: 'refresh-1',
    })
  })

  it('survives a reload: the next page load starts logged in', async () => {
    const { fetch } = backendWith({ ...ADA, role: 'admin' })
    await (await load(fetch)).session.login('ada@example.com', 'pw')
    const { session } = await load(fetch)
    expect(session.isAuthenticated).toBe(true)
    expect(await session.ensureUser()).toMatchObject({ username: 'ada' })
    expect(session.isAdmin).toBe(true)
  })

  it('registers without logging in', async () => {
    const { fetch, calls } = backendWith(ADA)
    const { session } = await load(fetch)
    await session.register('ada@example.com', ' ada ', 'pw')
    expect(calls.map((c) => c.url)).toEqual(['/auth/register'])
    expect(calls[0]!.body).toEqual({ email: 'ada@example.com', username: 'ada', password: 'pw' })
    expect(session.isAuthenticated).toBe(false)
  })

  it('logs out on the server with the refresh token, and here', async () => {
    const { fetch, calls } = backendWith(ADA)
    const { session } = await load(fetch)
    await session.login('ada@example.com', 'pw')
    await session.logout()
    expect(calls.at(-1)).toMatchObject({ url: '/auth/logout', body: { refresh_token: 'refresh-1' } })
    expect(session.isAuthenticated).toBe(false)
    expect(session.user).toBeNull()
    expect(localStorage.getItem('sensorcloud.session')).toBeNull()
    expect(session.takeFlash()).toEqual({ kind: 'info', text: 'You have been logged out.' })
    expect(session.takeFlash()).toBeNull()
  })

  it('logs out here even when the server cannot be reached', async () => {
    const { fetch } = backendWith(ADA, (call) => (call.url === '/auth/logout' ? json(500, { msg: 'boom' }) : undefined))
    const { session } = await load(fetch)
    await session.login('ada@example.com', 'pw')
    await session.logout()
    expect(session.isAuthenticated).toBe(false)
  })

  it('ends a session the server no longer knows and says so', async () => {
    localStorage.setItem('sensorcloud.session', JSON.stringify({ accessToken: 'old', refreshToken: 'old', expiresAt: Date.now() + 600_000 }))
    const { fetch } = backendWith(ADA)
    const { session, api } = await load(fetch)
    const expired = vi.fn()
    api.onSessionExpired(expired)
    expect(await session.ensureUser()).toBeNull()
    expect(session.isAuthenticated).toBe(false)
    expect(expired).toHaveBeenCalledWith('Your session has expired. Please log in again.')
  })
})

describe('router guard', () => {
  async function withRouter(me: User, loggedIn: boolean) {
    const { fetch } = backendWith(me)
    const { session } = await load(fetch)
    if (loggedIn) await session.login(me.email, 'pw')
    const { router } = await import('../../src/router')
    await router.push('/service-status')
    return { router, session }
  }

  it('sends a visitor from a restricted page to Login with the original message', async () => {
    const { router, session } = await withRouter(ADA, false)
    await router.push('/devices')
    expect(router.currentRoute.value.fullPath).toBe('/login?redirect=/devices')
    expect(session.takeFlash()).toEqual({ kind: 'error', text: 'Restricted area, please login!' })
  })

  it('lets a visitor see Service Status, Login and Register', async () => {
    const { router } = await withRouter(ADA, false)
    for (const path of ['/service-status', '/login', '/register']) {
      await router.push(path)
      expect(router.currentRoute.value.path).toBe(path)
    }
  })

  it('keeps a normal user out of Users', async () => {
    const { router, session } = await withRouter(ADA, true)
    await router.push('/admin/users')
    expect(router.currentRoute.value.path).toBe('/dashboard')
    expect(session.takeFlash()?.text).toMatch(/admins only/)
  })

  it('lets an admin into Users, and a logged-in user past Login', async () => {
    const { router } = await withRouter({ ...ADA, role: 'admin' }, true)
    await router.push('/admin/users')
    expect(router.currentRoute.value.path).toBe('/admin/users')
    await router.push('/login')
    expect(router.currentRoute.value.path).toBe('/dashboard')
  })

  it('accepts only local redirects after login', async () => {
    const { safeRedirect } = await import('../../src/router')
    expect(safeRedirect('/devices?x=1')).toBe('/devices?x=1')
    expect(safeRedirect('//evil.example/')).toBe('/dashboard')
    expect(safeRedirect('https://evil.example/')).toBe('/dashboard')
    expect(safeRedirect(undefined)).toBe('/dashboard')
  })
})
