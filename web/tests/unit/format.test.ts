import { describe, expect, it } from 'vitest'
import { exportFileName, formatAgo, formatDuration, formatValue } from '../../src/lib/format'

describe('format', () => {
  it('values', () => {
    expect(formatValue(21.456789)).toBe('21.4568')
    expect(formatValue(1234567)).toBe('1,234,567')
    expect(formatValue(true)).toBe('true')
    expect(formatValue(null)).toBe('—')
    expect(formatValue({ lat: 1, lon: 2 })).toBe('{"lat":1,"lon":2}')
    expect(formatValue('x'.repeat(50))).toHaveLength(40)
  })

  it('ages and durations', () => {
    const now = Date.UTC(2024, 0, 1, 12)
    expect(formatAgo(new Date(now - 2000).toISOString(), now)).toBe('just now')
    expect(formatAgo(new Date(now - 42_000).toISOString(), now)).toBe('42 s ago')
    expect(formatAgo(new Date(now - 5 * 60_000).toISOString(), now)).toBe('5 min ago')
    expect(formatAgo(new Date(now - 3 * 3600_000).toISOString(), now)).toBe('3 h ago')
    expect(formatAgo(new Date(now - 2 * 86400_000).toISOString(), now)).toBe('2 d ago')
    expect(formatDuration(42)).toBe('42 s')
    expect(formatDuration(3725)).toBe('1 h 2 min')
    expect(formatDuration(200_000)).toBe('2 d 7 h')
  })

  it('export file names', () => {
    expect(exportFileName('devices/abc/temp', new Date(Date.UTC(2024, 4, 1, 10, 0)))).toBe(
      'devices_abc_temp_2024-05-01T10-00.csv',
    )
  })
})
