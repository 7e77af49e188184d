import { describe, expect, it } from 'vitest'
import {
  BUCKET_ORIGIN_S,
  addReading,
  bucketStart,
  emptySeries,
  fromBuckets,
  fromPoints,
  sparklineValues,
  trimBefore,
} from '../../src/lib/series'

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0) / 1000 // a multiple of every ladder width from the origin
const iso = (s: number) => new Date(s * 1000).toISOString()

describe('series from the API', () => {
  it('takes buckets in uPlot columns', () => {
    const s = fromBuckets([
      { date: iso(T0), avg: 2, min: 1, max: 3, count: 4 },
      { date: iso(T0 + 10), avg: 5 },
    ])
    expect(s).toEqual({ t: [T0, T0 + 10], avg: [2, 5], min: [1, 5], max: [3, 5], count: [4, 1] })
  })

  it('takes raw readings newest first, keeping only numbers', () => {
    const s = fromPoints([
      { date: iso(T0 + 2), value: 3 },
      { date: iso(T0 + 1), value: 'on' },
      { date: iso(T0), value: 1 },
    ])
    expect(s.t).toEqual([T0, T0 + 2])
    expect(sparklineValues(s)).toEqual([1, 3])
  })
})

describe('live readings', () => {
  it('align buckets to the API origin', () => {
    expect(bucketStart(T0 + 7, 5)).toBe(T0 + 5)
    expect(bucketStart(T0 + 86400 + 5, 86400)).toBe(T0 - 12 * 3600 + 86400) // days start at 00:00 UTC
    expect(bucketStart(BUCKET_ORIGIN_S - 1, 7 * 86400)).toBe(BUCKET_ORIGIN_S - 7 * 86400)
  })

  it('merge into the newest bucket with a running average, min and max', () => {
    const s = fromBuckets([{ date: iso(T0), avg: 10, min: 10, max: 10, count: 1 }])
    expect(addReading(s, iso(T0 + 3), 20, 10)).toBe(true)
    expect(addReading(s, iso(T0 + 4), 0, 10)).toBe(true)
    expect(s).toEqual({ t: [T0], avg: [10], min: [0], max: [20], count: [3] })
  })

  it('open a new bucket after the newest', () => {
    const s = fromBuckets([{ date: iso(T0), avg: 1, min: 1, max: 1, count: 1 }])
    addReading(s, iso(T0 + 25), 4, 10)
    expect(s.t).toEqual([T0, T0 + 20])
    expect(s.avg).toEqual([1, 4])
  })

  it('put a late reading in time order', () => {
    const s = emptySeries()
    addReading(s, iso(T0 + 50), 5, 10)
    addReading(s, iso(T0 + 10), 1, 10)
    addReading(s, iso(T0 + 30), 3, 10)
    addReading(s, iso(T0 + 31), 4, 10)
    expect(s.t).toEqual([T0 + 10, T0 + 30, T0 + 50])
    expect(s.avg).toEqual([1, 3.5, 5])
    expect(s.count).toEqual([1, 2, 1])
  })

  it('skip what a chart cannot draw', () => {
    const s = emptySeries()
    expect(addReading(s, iso(T0), 'open', 10)).toBe(false)
    expect(addReading(s, iso(T0), { a: 1 }, 10)).toBe(false)
    expect(addReading(s, 'not a date', 1, 10)).toBe(false)
    expect(addReading(s, iso(T0), Number.NaN, 10)).toBe(false)
    expect(s.t).toEqual([])
  })

  it('drop what slid out of a window that follows the clock', () => {
    const s = emptySeries()
    for (const offset of [0, 10, 20, 30]) addReading(s, iso(T0 + offset), offset, 10)
    trimBefore(s, T0 + 15, 10) // the bucket at T0+10 still overlaps the window
    expect(s.t).toEqual([T0 + 10, T0 + 20, T0 + 30])
    trimBefore(s, T0 + 30)
    expect(s.t).toEqual([T0 + 30])
    expect(s.avg).toEqual([30])
  })

  it('keep a sparkline to its last values', () => {
    const s = emptySeries()
    for (let i = 0; i < 100; i++) addReading(s, iso(T0 + i), i, 1)
    expect(sparklineValues(s, 3)).toEqual([97, 98, 99])
  })
})
