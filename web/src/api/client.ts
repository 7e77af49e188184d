// The HTTP client: JSON in and out, the access token on every request, and a silent refresh.
//
// An access token about to expire is refreshed before the request; a request answered 401 is
// retried once after a refresh. Refresh tokens are single-use (the server rotates them and revokes
// the whole family when an old one comes back), so only one refresh runs at a time: in this tab
// (one shared promise) and across tabs (a Web Lock, and a re-read of the stored session, which
// another tab may already have refreshed). When the refresh token itself is refused the session is
// over: it is cleared and onSessionExpired tells the app, which returns the user to Login.

import type { FieldError, Tokens } from './types'

export interface Session {
  accessToken: string
  refreshToken: string
  /** When the access token expires, in ms since the epoch (by this machine's clock). */
  expiresAt: number
  /** How long access tokens of this session live (expires_in), when known. */
  lifetimeMs?: number
}

/** Where the session survives a reload (localStorage in the app, a variable in tests). */
export interface SessionStore {
  load(): Session | null
  save(session: Session | null): void
}

export type Query = Record<string, string | number | boolean | null | undefined>

export interface RequestOptions {
  query?: Query
  body?: unknown
  /** Send the access token (default true). */
  auth?: boolean
  signal?: AbortSignal
  /** Error statuses whose body is still the answer (e.g. a 503 that describes what is down). */
  accept?: number[]
}

export interface ClientOptions {
  store: SessionStore
  baseUrl?: string
  fetch?: typeof fetch
  now?: () => number
  /** Runs `task` while holding a lock shared by every tab of this origin. */
  lock?: <T>(name: string, task: () => Promise<T>) => Promise<T>
  onSessionExpired?: (message: string) => void
  onSessionChange?: (session: Session | null) => void
}

export const SESSION_EXPIRED = 'Your session has expired. Please log in again.'
export const NOT_LOGGED_IN = 'Restricted area, please login!'
/** Refresh this long before the access token's expiry, so no request carries an expired token. */
export const REFRESH_MARGIN_MS = 30_000
const REFRESH_PATH = '/auth/refresh'

/** An error answer of the API ({"msg"}, with field errors on a 422), or a network failure (status 0). */
export class ApiError extends Error {
  readonly status: number
  readonly fields: Record<string, string>

  constructor(status: number, message: string, errors: FieldError[] = []) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.fields = {}
    for (const error of errors) {
      // the first message of a field is the one to show
      this.fields[error.field] ??= error.message
    }
  }
}

export function sessionFromTokens(tokens: Tokens, now: number): Session {
  return {
    accessToken: tokens.auth_token,
    refreshToken: tokens.refresh_token,
    expiresAt: now + tokens.expires_in * 1000,
    lifetimeMs: tokens.expires_in * 1000,
  }
}

/** Refresh this long before expiry: REFRESH_MARGIN_MS, or a third of a shorter token lifetime. */
export function refreshMargin(session: Session): number {
  return Math.min(REFRESH_MARGIN_MS, (session.lifetimeMs ?? Infinity) / 3)
}

export function buildUrl(baseUrl: string, path: string, query?: Query): string {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') params.append(key, String(value))
  }
  const search = params.toString()
  return `${baseUrl}${path}${search ? `?${search}` : ''}`
}

async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown = null
  try {
    body = await response.json()
  } catch {
    // not JSON (a proxy's error page): the status text is all there is
  }
  const record = (body ?? {}) as { msg?: unknown; detail?: unknown; errors?: unknown }
  const message =
    typeof record.msg === 'string'
      ? record.msg
      : typeof record.detail === 'string'
        ? record.detail
        : `${response.status} ${response.statusText || 'Error'}`.trim()
  const errors = Array.isArray(record.errors) ? (record.errors as FieldError[]) : []
  return new ApiError(response.status, message, errors)
}

const noLock = <T>(_name: string, task: () => Promise<T>): Promise<T> => task()

export class ApiClient {
  private session: Session | null
  private refreshing: Promise<boolean> | null = null
  private readonly options: Required<Omit<ClientOptions, 'onSessionExpired' | 'onSessionChange'>> &
    Pick<ClientOptions, 'onSessionExpired' | 'onSessionChange'>

  constructor(options: ClientOptions) {
    this.options = {
      baseUrl: '',
      fetch: (...args) => globalThis.fetch(...args),
      now: () => Date.now(),
      lock: noLock,
      ...options,
    }
    this.session = options.store.load()
  }

  get current(): Session | null {
    return this.session
  }

  get isAuthenticated(): boolean {
    return this.session !== null
  }

  /** Start a session from a login (or refresh) answer. */
  signIn(tokens: Tokens): void {
    this.setSession(sessionFromTokens(tokens, this.options.now()))
  }

  /** Forget the session here and in storage (no request). */
  clear(): void {
    this.setSession(null)
  }

  /** Another tab changed the stored session: take it over. */
  adopt(session: Session | null): void {
    this.session = session
    this.options.onSessionChange?.(session)
  }

  async get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.json<T>('GET', path, options)
  }

  async post<T>(path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.json<T>('POST', path, { ...options, body })
  }

  async patch<T>(path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    return this.json<T>('PATCH', path, { ...options, body })
  }

  async delete(path: string, options: RequestOptions = {}): Promise<void> {
    await this.request('DELETE', path, options)
  }

  async json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.request(method, path, options)
    if (response.status === 204) return undefined as T
    return (await response.json()) as T
  }

  /** A successful Response (any other status is thrown as ApiError), refreshing and retrying once. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    if (options.auth === false) return this.checked(await this.send(method, path, options, null), options)
    const token = await this.freshToken()
    if (token === null) throw new ApiError(401, NOT_LOGGED_IN)
    const first = await this.send(method, path, options, token)
    if (first.status !== 401) return this.checked(first, options)
    if (!(await this.refresh(token))) throw new ApiError(401, SESSION_EXPIRED)
    const retried = await this.send(method, path, options, this.session?.accessToken ?? null)
    if (retried.status === 401) {
      // refreshed, and still refused: the server has ended this session
      this.expire()
      throw new ApiError(401, SESSION_EXPIRED)
    }
    return this.checked(retried, options)
  }

  /**
   * An access token valid for at least `minValidityMs` (default: the refresh margin), refreshing
   * first if needed; null when there is no session any more. The live feed uses it too.
   */
  async freshToken(minValidityMs?: number): Promise<string | null> {
    const session = this.session
    if (session === null) return null
    if (session.expiresAt - this.options.now() > (minValidityMs ?? refreshMargin(session))) return session.accessToken
    const refreshed = await this.refresh(session.accessToken)
    return refreshed ? (this.session?.accessToken ?? null) : null
  }

  /**
   * Refresh the session unless it already changed since `staleToken` was used. Resolves true when
   * there is a usable session afterwards; false when the session is over (and then cleared).
   * Network errors are thrown: a server that cannot be reached has not ended the session.
   */
  async refresh(staleToken?: string): Promise<boolean> {
    if (this.session === null) return false
    if (staleToken !== undefined && this.session.accessToken !== staleToken) return true
    this.refreshing ??= this.options
      .lock('sensorcloud-refresh', () => this.refreshOnce())
      .finally(() => {
        this.refreshing = null
      })
    return this.refreshing
  }

  private async refreshOnce(): Promise<boolean> {
    const mine = this.session
    if (mine === null) return false
    const stored = this.options.store.load()
    if (stored === null) {
      this.expire()
      return false
    }
    if (stored.refreshToken !== mine.refreshToken) {
      // another tab refreshed (or logged in again) meanwhile: its tokens are the current ones
      this.adopt(stored)
      return true
    }
    const response = await this.send('POST', REFRESH_PATH, { body: { refresh_token: mine.refreshToken } }, null)
    if (response.ok) {
      this.signIn((await response.json()) as Tokens)
      return true
    }
    if (response.status === 401 || response.status === 403 || response.status === 422) {
      this.expire()
      return false
    }
    throw await errorFrom(response)
  }

  private expire(): void {
    const hadSession = this.session !== null
    this.setSession(null)
    if (hadSession) this.options.onSessionExpired?.(SESSION_EXPIRED)
  }

  private setSession(session: Session | null): void {
    this.session = session
    this.options.store.save(session)
    this.options.onSessionChange?.(session)
  }

  private async send(method: string, path: string, options: RequestOptions, token: string | null): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (token !== null) headers.Authorization = `Bearer ${token}`
    let body: string | undefined
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json'
      body = JSON.stringify(options.body)
    }
    try {
      return await this.options.fetch(buildUrl(this.options.baseUrl, path, options.query), {
        method,
        headers,
        body,
        signal: options.signal,
      })
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') throw error
      throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.')
    }
  }

  private async checked(response: Response, options: RequestOptions): Promise<Response> {
    if (response.ok || options.accept?.includes(response.status)) return response
    throw await errorFrom(response)
  }
}
