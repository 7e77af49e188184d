// The live feed: one WebSocket to /api/v1/live carrying new readings of the topics on screen.
//
// Protocol (iot/live.py): the first message authenticates ({"type":"auth","token"}), the server
// answers "ready" with the token's expiry; before that expiry we authenticate again with a fresh
// token to stay connected. A close with 4401 means the token was refused: refresh, reconnect. Any
// other drop reconnects with a growing delay, and onResync tells the page to reload what it may
// have missed meanwhile.

export type LiveState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'closed'

export interface LiveReading {
  topic: string
  date: string
  value: unknown
}

export interface LiveOptions {
  url: string
  /** An access token valid for at least `minValidityMs` (refreshed if need be), or null when the session is over. */
  token: (minValidityMs?: number) => Promise<string | null>
  /** Refresh the session after the server refused the token; false when it is over. */
  refresh: () => Promise<boolean>
  onReadings: (readings: LiveReading[]) => void
  onState?: (state: LiveState) => void
  onResync?: () => void
  /** The server confirmed these topics (all that this connection now receives). */
  onSubscribed?: (topics: string[]) => void
  onError?: (message: string) => void
  createSocket?: (url: string) => WebSocket
  /** Authenticate again this long before the token expires. */
  reauthMarginMs?: number
  pingEveryMs?: number
}

export const CLOSE_UNAUTHORIZED = 4401
const MAX_BACKOFF_MS = 15_000

type ServerMessage =
  | { type: 'ready'; expires_at: number }
  | { type: 'subscribed'; topics: string[] }
  | { type: 'readings'; data: LiveReading[] }
  | { type: 'error'; msg: string; topics?: string[] }
  | { type: 'pong' }

export function backoffMs(attempt: number): number {
  return Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.max(0, attempt))
}

export class LiveFeed {
  private socket: WebSocket | null = null
  private wanted = new Set<string>()
  private sent = new Set<string>()
  private confirmed = new Set<string>()
  private refused = new Set<string>()
  private ready = false
  private stopped = true
  private attempt = 0
  private hadConnection = false
  private timers = new Set<ReturnType<typeof setTimeout>>()
  private pinger: ReturnType<typeof setInterval> | null = null
  private reauthTimer: ReturnType<typeof setTimeout> | null = null
  private sentToken: string | null = null
  state: LiveState = 'idle'

  constructor(private readonly options: LiveOptions) {}

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    void this.connect()
  }

  stop(): void {
    this.stopped = true
    this.clearTimers()
    const socket = this.socket
    this.socket = null
    this.ready = false
    if (socket && socket.readyState <= 1) socket.close(1000, 'bye')
    this.setState('closed')
  }

  /** The topics to receive; sent at once when connected, else on the next connection. */
  setTopics(topics: Iterable<string>): void {
    this.wanted = new Set(topics)
    this.refused.clear()
    this.sync()
  }

  private async connect(): Promise<void> {
    if (this.stopped) return
    this.setState(this.hadConnection ? 'reconnecting' : 'connecting')
    const token = await this.options.token().catch(() => undefined)
    if (this.stopped) return
    if (token === null) {
      this.stop() // no session: nothing to show live
      return
    }
    if (token === undefined) {
      this.retryLater()
      return
    }
    const create = this.options.createSocket ?? ((url: string) => new WebSocket(url))
    const socket = create(this.options.url)
    this.socket = socket
    this.sent = new Set()
    this.confirmed = new Set()
    this.ready = false
    this.sentToken = token
    socket.onopen = () => socket.send(JSON.stringify({ type: 'auth', token }))
    socket.onmessage = (event: MessageEvent) => this.receive(event.data)
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) return
      this.socket = null
      this.ready = false
      this.clearTimers()
      void this.closed(event.code)
    }
    socket.onerror = () => {
      // onclose follows and decides what to do
    }
  }

  private async closed(code: number): Promise<void> {
    if (this.stopped) return
    if (code === CLOSE_UNAUTHORIZED) {
      const ok = await this.options.refresh().catch(() => true)
      if (!ok) {
        this.stop()
        return
      }
    }
    this.retryLater()
  }

  private retryLater(): void {
    this.setState('reconnecting')
    const delay = backoffMs(this.attempt++)
    this.later(delay, () => void this.connect())
  }

  private receive(raw: unknown): void {
    let message: ServerMessage
    try {
      message = JSON.parse(String(raw)) as ServerMessage
    } catch {
      return
    }
    switch (message.type) {
      case 'ready':
        this.onReady(message.expires_at)
        break
      case 'subscribed':
        this.confirmed = new Set(message.topics)
        this.sent = new Set(message.topics)
        this.options.onSubscribed?.(message.topics)
        break
      case 'readings':
        if (Array.isArray(message.data) && message.data.length) this.options.onReadings(message.data)
        break
      case 'error':
        // the server refuses a whole subscribe for one unknown topic: drop that one, ask again
        if (message.topics?.length) {
          for (const topic of message.topics) this.refused.add(topic)
          this.sent = new Set(this.confirmed)
          this.sync()
        }
        this.options.onError?.(message.msg)
        break
      default:
        break
    }
  }

  private onReady(expiresAt: number): void {
    const first = !this.ready
    this.ready = true
    this.attempt = 0
    if (first) {
      const resync = this.hadConnection
      this.hadConnection = true
      this.setState('live')
      this.sync()
      this.startPinging()
      if (resync) this.options.onResync?.()
    }
    this.scheduleReauth(expiresAt)
  }

  private scheduleReauth(expiresAt: number): void {
    if (this.reauthTimer !== null) {
      clearTimeout(this.reauthTimer)
      this.timers.delete(this.reauthTimer)
    }
    const left = expiresAt * 1000 - Date.now()
    // a third of what is left for short-lived tokens, so they are not refreshed every few seconds
    const margin = Math.min(this.options.reauthMarginMs ?? 25_000, Math.max(1000, left / 3))
    this.reauthTimer = this.later(Math.max(1000, left - margin), () => void this.reauth(margin))
  }

  /** Send a token that outlives the margin; if the client still holds the one sent, look again soon. */
  private async reauth(margin: number): Promise<void> {
    const socket = this.socket
    const token = await this.options.token(margin).catch(() => undefined)
    if (token === null) {
      this.stop()
      return
    }
    if (!socket || socket !== this.socket || socket.readyState !== 1) return
    if (token === undefined || token === this.sentToken) {
      // no network, or the clocks disagree: the server's 4401 remains the backstop
      this.reauthTimer = this.later(5_000, () => void this.reauth(margin))
      return
    }
    this.sentToken = token
    socket.send(JSON.stringify({ type: 'auth', token }))
  }

  private sync(): void {
    const socket = this.socket
    if (!socket || !this.ready || socket.readyState !== 1) return
    const add = [...this.wanted].filter((t) => !this.sent.has(t) && !this.refused.has(t))
    const remove = [...this.sent].filter((t) => !this.wanted.has(t))
    if (remove.length) socket.send(JSON.stringify({ type: 'unsubscribe', topics: remove }))
    if (add.length) socket.send(JSON.stringify({ type: 'subscribe', topics: add }))
    // optimistic: "subscribed" confirms, "error" undoes
    for (const t of add) this.sent.add(t)
    for (const t of remove) this.sent.delete(t)
  }

  private startPinging(): void {
    if (this.pinger !== null) clearInterval(this.pinger)
    this.pinger = setInterval(() => {
      if (this.socket?.readyState === 1) this.socket.send(JSON.stringify({ type: 'ping' }))
    }, this.options.pingEveryMs ?? 25_000)
  }

  private later(ms: number, task: () => void): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      task()
    }, ms)
    this.timers.add(timer)
    return timer
  }

  private clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    this.reauthTimer = null
    if (this.pinger !== null) clearInterval(this.pinger)
    this.pinger = null
  }

  private setState(state: LiveState): void {
    if (this.state === state) return
    this.state = state
    this.options.onState?.(state)
  }
}
