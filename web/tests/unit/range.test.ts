import { describe, expect, it } from 'vitest'
import {
  AUTO_LADDER_S,
  PRESETS,
  autoIntervalSeconds,
  checkCustomRange,
  describeRange,
  findPreset,
  followsNow,
  formatLocalInput,
  intervalLabel,
  parseInterval,
  parseLocalInput,
  resolveRange,
} from '../../src/lib/range'

const NOW = Date.UTC(2024, 4, 1, 12, 0, 0)
const span = (ms: number) => ({ from: new Date(NOW - ms), to: new Date(NOW) })

describe('range presets', () => {
  it('end now and span their length', () => {
    for (const preset of PRESETS) {
      const range = resolveRange({ kind: 'preset', key: preset.key }, NOW)
      expect(range.to.getTime()).toBe(NOW)
      expect(range.to.getTime() - range.from.getTime()).toBe(preset.ms)
    }
  })

  it('fall back to the default for an unknown key', () => {
    expect(findPreset('nope').key).toBe('1h')
  })

  it('follow the clock; a custom range does not', () => {
    const custom = { kind: 'custom' as const, from: new Date(NOW - 1000), to: new Date(NOW) }
    expect(followsNow({ kind: 'preset', key: '1h' })).toBe(true)
    expect(followsNow(custom)).toBe(false)
    expect(resolveRange(custom, NOW + 1e6)).toEqual({ from: custom.from, to: custom.to })
    expect(describeRange({ kind: 'preset', key: '24h' })).toBe('last 24 hours')
  })
})

describe('auto interval (the API ladder, about 500 buckets)', () => {
  it.each([
    [15 * 60_000, 5],
    [3600_000, 10],
    [6 * 3600_000, 60],
    [24 * 3600_000, 300],
    [7 * 86400_000, 1800],
    [30 * 86400_000, 3 * 3600],
    [500_000, 1],
    [10 * 365 * 86400_000, 7 * 86400],
  ])('%i ms -> %i s', (ms, seconds) => {
    expect(autoIntervalSeconds(span(ms))).toBe(seconds)
  })

  it('gives at most 500 buckets below the widest step', () => {
    for (const preset of PRESETS) {
      const width = autoIntervalSeconds(span(preset.ms))
      expect(AUTO_LADDER_S).toContain(width)
      expect(Math.ceil(preset.ms / 1000 / width)).toBeLessThanOrEqual(500)
    }
  })

  it('reads and writes interval labels as the API does', () => {
    expect(parseInterval('30s')).toBe(30)
    expect(parseInterval('5m')).toBe(300)
    expect(parseInterval('3h')).toBe(10800)
    expect(parseInterval('1d')).toBe(86400)
    expect(parseInterval('1w')).toBe(604800)
    expect(parseInterval('0s')).toBeNull()
    expect(parseInterval('auto')).toBeNull()
    expect(intervalLabel(60)).toBe('1m')
    expect(intervalLabel(90)).toBe('90s')
    expect(intervalLabel(86400)).toBe('1d')
    for (const width of AUTO_LADDER_S) expect(parseInterval(intervalLabel(width))).toBe(width)
  })
})

describe('custom ranges', () => {
  it('round-trip datetime-local values in local time', () => {
    const date = new Date(2024, 1, 29, 7, 5)
    expect(formatLocalInput(date)).toBe('2024-02-29T07:05')
    expect(parseLocalInput('2024-02-29T07:05')).toEqual(date)
    expect(parseLocalInput('2024-02-29T07:05:30')).toEqual(new Date(2024, 1, 29, 7, 5, 30))
  })

  it('refuse malformed and impossible dates', () => {
    expect(parseLocalInput('')).toBeNull()
    expect(parseLocalInput('yesterday')).toBeNull()
    expect(parseLocalInput('2023-02-29T10:00')).toBeNull()
  })

  it('check order, presence and length', () => {
    expect(checkCustomRange('', '2024-01-01T00:00')).toEqual({ ok: false, error: 'Enter a start date and time.' })
    expect(checkCustomRange('2024-01-01T00:00', '')).toEqual({ ok: false, error: 'Enter an end date and time.' })
    expect(checkCustomRange('2024-01-02T00:00', '2024-01-01T00:00')).toEqual({
      ok: false,
      error: 'The end must be after the start.',
    })
    expect(checkCustomRange('2022-01-01T00:00', '2024-01-01T00:00')).toMatchObject({ ok: false })
    expect(checkCustomRange('2024-01-01T00:00', '2024-01-01T01:00')).toEqual({
      ok: true,
      range: { from: new Date(2024, 0, 1, 0, 0), to: new Date(2024, 0, 1, 1, 0) },
    })
  })
})
