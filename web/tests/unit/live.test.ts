import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { CLOSE_UNAUTHORIZED, LiveFeed, backoffMs, type LiveOptions } from '../../src/lib/live'

/** Just enough of a WebSocket: records what is sent, lets the test play the server. */
class FakeSocket {
  static all: FakeSocket[] = []
  readyState = 0
  sent: Record<string, unknown>[] = []
  onopen: (() => void) | null = null
  onmessage: ((event: { data: string }) => void) | null = null
  onclose: ((event: { code: number }) => void) | null = null
  onerror: (() => void) | null = null

  constructor(readonly url: string) {
    FakeSocket.all.push(this)
  }
  send(data: string) {
    this.sent.push(JSON.parse(data) as Record<string, unknown>)
  }
  close() {
    this.readyState = 3
  }
  open() {
    this.readyState = 1
    this.onopen?.()
  }
  receive(message: unknown) {
    this.onmessage?.({ data: JSON.stringify(message) })
  }
  drop(code: number) {
    this.readyState = 3
    this.onclose?.({ code })
  }
}

const flush = () => vi.advanceTimersByTimeAsync(0)
const latest = () => FakeSocket.all[FakeSocket.all.length - 1]!

function feed(overrides: Partial<LiveOptions> = {}) {
  const options = {
    url: 'ws://host/api/v1/live',
    token: vi.fn(async (): Promise<string | null> => 'token-1'),
    refresh: vi.fn(async () => true),
    onReadings: vi.fn(),
    onState: vi.fn(),
    onResync: vi.fn(),
    onError: vi.fn(),
    createSocket: (url: string) => new FakeSocket(url) as unknown as WebSocket,
  }
  return { live: new LiveFeed({ ...options, ...overrides }), options }
}

async function connected(live: LiveFeed, expiresInS = 900) {
  live.start()
  await flush()
  const socket = latest()
  socket.open()
  socket.receive({ type: 'ready', expires_at: Date.now() / 1000 + expiresInS })
  return socket
}

beforeEach(() => {
  vi.useFakeTimers()
  vi.setSystemTime(Date.UTC(2024, 0, 1))
  FakeSocket.all = []
})
afterEach(() => {
  vi.useRealTimers()
})

describe('LiveFeed', () => {
  it('authenticates first, then subscribes to the wanted topics', async () => {
    const { live, options } = feed()
    live.setTopics(['a/t', 'b/t'])
    const socket = await connected(live)
    expect(socket.url).toBe('ws://host/api/v1/live')
    expect(socket.sent).toEqual([
      { type: 'auth', token: 'token-1' },
      { type: 'subscribe', topics: ['a/t', 'b/t'] },
    ])
    expect(options.onState).toHaveBeenLastCalledWith('live')
    expect(live.state).toBe('live')
  })

  it('sends subscription changes as differences', async () => {
    const { live } = feed()
    live.setTopics(['a', 'b'])
    const socket = await connected(live)
    socket.receive({ type: 'subscribed', topics: ['a', 'b'] })
    live.setTopics(['b', 'c'])
    expect(socket.sent.slice(2)).toEqual([
      { type: 'unsubscribe', topics: ['a'] },
      { type: 'subscribe', topics: ['c'] },
    ])
  })

  it('passes readings on', async () => {
    const { live, options } = feed()
    const socket = await connected(live)
    const data = [{ topic: 'a', date: '2024-01-01T00:00:00Z', value: 1 }]
    socket.receive({ type: 'readings', data })
    socket.receive({ type: 'pong' })
    expect(options.onReadings).toHaveBeenCalledExactlyOnceWith(data)
  })

  it('drops a refused topic and subscribes to the others again', async () => {
    const { live, options } = feed()
    live.setTopics(['a', 'gone'])
    const socket = await connected(live)
    socket.receive({ type: 'error', msg: 'Topic not found', topics: ['gone'] })
    expect(socket.sent.at(-1)).toEqual({ type: 'subscribe', topics: ['a'] })
    expect(options.onError).toHaveBeenCalledWith('Topic not found')
  })

  it('authenticates again with a fresh token before the token expires', async () => {
    const { live, options } = feed({ reauthMarginMs: 25_000 })
    const socket = await connected(live, 120)
    options.token.mockResolvedValue('token-2')
    await vi.advanceTimersByTimeAsync(94_000)
    expect(socket.sent.filter((m) => m.type === 'auth')).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(socket.sent.at(-1)).toEqual({ type: 'auth', token: 'token-2' })
  })

  it('re-authenticates short-lived tokens a third of their life before expiry', async () => {
    const { live, options } = feed({ reauthMarginMs: 25_000 })
    const socket = await connected(live, 30)
    options.token.mockResolvedValue('token-2')
    await vi.advanceTimersByTimeAsync(19_000)
    expect(socket.sent.filter((m) => m.type === 'auth')).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(2_000)
    expect(options.token).toHaveBeenLastCalledWith(10_000)
    expect(socket.sent.at(-1)).toEqual({ type: 'auth', token: 'token-2' })
  })

  it('asks for a token outliving the margin, and sends nothing while the client holds the same one', async () => {
    const { live, options } = feed({ reauthMarginMs: 25_000 })
    const socket = await connected(live, 120)
    await vi.advanceTimersByTimeAsync(96_000)
    expect(options.token).toHaveBeenLastCalledWith(25_000)
    expect(socket.sent.filter((m) => m.type === 'auth')).toHaveLength(1) // still token-1: not re-sent
    options.token.mockResolvedValue('token-2')
    await vi.advanceTimersByTimeAsync(5_000)
    expect(socket.sent.at(-1)).toEqual({ type: 'auth', token: 'token-2' })
  })

  it('refreshes and reconnects after a 4401 close, then asks the page to resync', async () => {
    const { live, options } = feed()
    live.setTopics(['a'])
    const first = await connected(live)
    first.drop(CLOSE_UNAUTHORIZED)
    await flush()
    expect(options.refresh).toHaveBeenCalledOnce()
    expect(options.onState).toHaveBeenLastCalledWith('reconnecting')
    await vi.advanceTimersByTimeAsync(backoffMs(0))
    const second = latest()
    expect(second).not.toBe(first)
    second.open()
    second.receive({ type: 'ready', expires_at: Date.now() / 1000 + 900 })
    expect(second.sent).toEqual([
      { type: 'auth', token: 'token-1' },
      { type: 'subscribe', topics: ['a'] },
    ])
    expect(options.onResync).toHaveBeenCalledOnce()
  })

  it('stops when the session is over', async () => {
    const { live, options } = feed({ refresh: vi.fn(async () => false) })
    const socket = await connected(live)
    socket.drop(CLOSE_UNAUTHORIZED)
    await flush()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(FakeSocket.all).toHaveLength(1)
    expect(options.onState).toHaveBeenLastCalledWith('closed')
  })

  it('does not connect without a session', async () => {
    const { live } = feed({ token: vi.fn(async () => null) })
    live.start()
    await flush()
    expect(FakeSocket.all).toHaveLength(0)
    expect(live.state).toBe('closed')
  })

  it('backs off up to 15 s between attempts', () => {
    expect([0, 1, 2, 3, 4, 5, 10].map(backoffMs)).toEqual([1000, 2000, 4000, 8000, 15000, 15000, 15000])
  })

  it('closes its socket on stop and does not reconnect', async () => {
    const { live } = feed()
    const socket = await connected(live)
    live.stop()
    expect(socket.readyState).toBe(3)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(FakeSocket.all).toHaveLength(1)
  })
})
