// Test doubles: a scripted fetch and an in-memory session store.
import type { Session, SessionStore } from '../../src/api/client'
import type { Tokens } from '../../src/api/types'

export interface Call {
  method: string
  url: string
  headers: Record<string, string>
  body: unknown
}

type Handler = (call: Call) => Response | Promise<Response>

export function json(status: number, body: unknown): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  })
}

export function tokens(n: number, expiresIn = 900): Tokens {
  return {
    message: 'Successfully logged in.',
    auth_token: `access-${n}`,
    refresh_token: `refresh-${n}`,
    token_type: 'bearer',
    expires_in: expiresIn,
  }
}

/** A fetch that answers with `handler` and records every call. */
export function fakeFetch(handler: Handler) {
  const calls: Call[] = []
  const fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const call: Call = {
      method: init.method ?? 'GET',
      url: String(input),
      headers: (init.headers ?? {}) as Record<string, string>,
      body: init.body ? JSON.parse(String(init.body)) : undefined,
    }
    calls.push(call)
    return handler(call)
  }
  return { fetch: fetch as typeof globalThis.fetch, calls }
}

export function memoryStore(initial: Session | null = null): SessionStore & { value: Session | null } {
  return {
    value: initial,
    load() {
      return this.value
    },
    save(session) {
      this.value = session
    },
  }
}

export function session(n: number, expiresAt = Date.now() + 600_000): Session {
  return { accessToken: `access-${n}`, refreshToken: `refresh-${n}`, expiresAt }
}
